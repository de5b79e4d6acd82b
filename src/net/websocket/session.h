#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "chat/chat_key.h"
#include "chat/hub.h"
#include "chat/token_bucket.h"
#include "net/services.h"
#include "net/session_registry.h"
#include "net/store_call_budget.h"
#include "net/websocket/admission.h"
#include "net/websocket/frame_socket.h"
#include "net/websocket/protocol.h"
#include "net/websocket/send_queue.h"

namespace chatd::net::websocket {

/// One WebSocket connection to a chat, from the upgrade to the close.
///
/// Its life is its pending work, as in Beast's examples: the read loop, the
/// writer, and each store call in flight hold it, and when the last of them
/// ends it is destroyed, which is the one place it leaves the hub and the
/// registry. Everything runs on its strand (the socket's executor) except
/// deliver() and notify(), which the commit thread and the fan-out call: they
/// only push onto the SendQueue, whose writer on the strand is the socket's
/// only writer.
///
/// What it does not do itself: who may connect (admission.h), what a frame
/// means (protocol_v1/v2, behind protocol.h), what the client sees first
/// (replay.h), and the frames' bound (send_queue.h).
class Session final : public chat::Subscriber,
                      public Closable,
                      public std::enable_shared_from_this<Session> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  /// `socket`'s executor is the connection's strand.
  Session(boost::asio::ip::tcp::socket socket, const Services& services);
  /// Leaves the hub and the registry, and logs the close.
  ~Session() override;

  /// Takes over the upgrade request and runs the session until it closes.
  void start(Request request);

  // chat::Subscriber (any thread)
  chat::ConnectionId connection_id() const override { return id_; }
  /// The connecting user: the token's subject with SECRET_KEY, else user1 of the path.
  const std::string& user() const override { return user_; }
  void deliver(const chat::MessagePtr& message,
               const std::shared_ptr<const std::string>& frame) override;
  void notify(const std::shared_ptr<const std::string>& frame) override;

  // Closable (any thread)
  void close_for_shutdown() override;

  // ---- For the protocol handlers and the replay (the strand only) ---------

  const Services& services() const { return services_; }
  const chat::ChatKey& chat() const { return *chat_; }
  const std::string& peer() const { return user_ == path_.user1 ? path_.user2 : path_.user1; }
  const ChatPath& path() const { return path_; }
  SendQueue& queue() { return queue_; }

  /// Queues a reply; a client that does not read its replies is closed (1008).
  void reply(std::string frame);
  /// Sends an error frame for a refused frame and counts it.
  void reject(std::string_view code, std::string_view message, std::string_view client_id = {});
  /// The store could not do what a frame asked: the error frame that says so.
  void reject_store_error(store::StoreError error, std::string_view what,
                          std::string_view client_id = {});
  void close(std::uint16_t code, std::string_view reason);
  /// The per-connection rate limit: false when this frame is refused (with
  /// an error frame naming `client_id`, or a 4429 close for a flood).
  bool take_rate_token(std::string_view client_id = {});
  /// Hands a message to the store; the protocol hears of its commit.
  void commit(std::string sender, std::string text, std::string client_id);
  /// Hands a change (edit, remove, block, unblock) by "me" to the store.
  void commit_change(chat::EntryKind kind, std::string client_id, std::uint64_t target,
                     std::string target_id, std::string text);
  bool is_v1() const { return v1_; }
  /// Whether this connection is shown `entry`: v1 never sees changes, and a
  /// block is shown to the blocker's connections only (any thread).
  bool shows(const chat::Message& entry) const;
  /// The peer blocks "me" (the hello's read, then each block or unblock):
  /// the peer's typing, presence and receipts are not shown. Any thread.
  void set_peer_blocks_me(bool blocks) { peer_blocks_me_.store(blocks); }
  /// Carries an event frame (v2) to the chat's other connections.
  void publish_event(std::string frame);

  /// Wraps a store call's completion: it runs on the strand, keeps the
  /// session alive, and counts against MAX_STORE_CALLS_PER_CONNECTION (past
  /// it the read loop waits: TCP backpressure on a client that sends faster
  /// than the store answers).
  template <typename Handler>
  auto store_call(Handler handler) {
    ++store_calls_;
    if (services_.store_budget != nullptr) services_.store_budget->take();
    return boost::asio::bind_executor(
        ws_.get_executor(),
        [self = shared_from_this(), handler = std::move(handler)](auto&&... results) mutable {
          handler(std::forward<decltype(results)>(results)...);
          self->store_call_done();
        });
  }

  /// Waits until the send queue has `bytes` of room. False when the session
  /// closes meanwhile, or when the queue stays full for SEND_STALL_TIMEOUT_MS:
  /// then the client is closed as too slow (1008) and may resume later.
  boost::asio::awaitable<bool> wait_for_room(std::size_t bytes);

  /// Queues a frame of the replay or of a paced answer once the send queue
  /// has room for it (SendQueue::paced; `seq` the newest message in it, 0 for
  /// none). False when the session closes meanwhile (or is closed as too slow).
  boost::asio::awaitable<bool> send_paced(std::string frame, std::uint64_t seq);
  /// Ends the replay (SendQueue::finish_replay): false when the replay must
  /// read on from the store after queue().last_seq_sent().
  bool finish_replay();

  /// Runs `work` (a coroutine of this session) with the read loop held, so
  /// that one client has at most one such answer (a history page) in the works.
  void run_exclusive(boost::asio::awaitable<void> work);

 private:
  // A plain socket under the WebSocket stream: its timeouts are the
  // WebSocket stream's own (stream_base::timeout), and an idle connection
  // does not carry a beast::tcp_stream's two timers. FrameSocket lets the
  // writer send every queued frame in one write.
  using Stream = boost::beast::websocket::stream<FrameSocket>;

  /// From the upgrade to the joined chat and its replay, or the refusal. The
  /// request is freed when this returns: an open session does not keep it.
  /// False when the handshake failed, so that there is nothing to read.
  boost::asio::awaitable<bool> open(std::unique_ptr<Request> request);
  boost::asio::awaitable<bool> accept(const Request& request, ProtocolVersion version);
  /// Both users against the user-search service; a refusal closes (4404, 1013).
  boost::asio::awaitable<bool> verify_users();
  /// With a token: closes the session (4401) when the token expires.
  void watch_token_expiry(std::chrono::system_clock::time_point expires_at);
  void announce_presence(std::size_t devices);

  // The read loop: callbacks, not a coroutine, so that an idle connection
  // holds no coroutine frame, only the pending read.
  void read_next();
  void on_read(boost::beast::error_code error, std::size_t bytes);
  void store_call_done();
  /// The store calls of all connections are at MAX_STORE_CALLS: reading
  /// resumes once they are under it (StoreCallBudget::wait).
  void wait_for_budget();
  /// Reads on if the loop waited for store calls or an exclusive answer.
  void resume_reading();
  bool reading_held() const;

  /// Acts on what a push did: starts the writer, counts a slow receiver.
  /// `on_strand`: called from the strand (else the writer is started there).
  void pushed(SendQueue::Result result, bool on_strand,
              std::string_view why = "its send queue passed SEND_QUEUE_MAX_BYTES");
  void write_next();
  void written(const boost::beast::error_code& error);

  Stream ws_;
  const Services& services_;
  const chat::ConnectionId id_;
  SendQueue queue_;
  ChatPath path_;
  std::string user_;
  std::optional<chat::ChatKey> chat_;
  std::unique_ptr<Protocol> protocol_;
  std::unique_ptr<ConnectionLimits::Ticket> ticket_;      // counts this connection while it lives
  std::optional<boost::asio::steady_timer> token_timer_;  // only with SECRET_KEY
  // Wakes the session's coroutine while it opens or waits for room: when user
  // lookups are answered, when the writer frees room, or on a close.
  boost::asio::steady_timer wake_;
  std::chrono::steady_clock::time_point opened_at_;
  // The rest: strand only.
  chat::TokenBucket send_rate_;
  chat::TokenBucket rate_strikes_;
  boost::beast::flat_buffer read_buffer_;
  SendQueue::Batch batch_;                                      // what the writer writes
  std::vector<std::chrono::steady_clock::time_point> read_at_;  // its live messages' read times
  std::size_t store_calls_ = 0;                                 // store calls in flight
  unsigned exclusive_ = 0;             // run_exclusive() answers in the works
  std::uint16_t read_close_code_ = 0;  // 1009 when the client's frame was too big
  bool accepted_ = false;              // the handshake succeeded (the close is logged and counted)
  bool joined_ = false;                // in the hub (presence is announced on leaving)
  bool ready_ = false;                 // open() done: frames are handled
  bool read_paused_ = false;
  bool waiting_budget_ = false;  // asked StoreCallBudget to wake it
  bool v1_ = false;              // set in open(), before the join
  std::atomic<bool> peer_blocks_me_{false};
  std::string peer_needle_;  // `"user":"<peer>"`, how the peer's events name it
};

}  // namespace chatd::net::websocket
