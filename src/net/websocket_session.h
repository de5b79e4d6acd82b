#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/container/devector.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>

#include "chat/chat_key.h"
#include "chat/hub.h"
#include "chat/token_bucket.h"
#include "net/chat_path.h"
#include "net/connection_limits.h"
#include "net/services.h"
#include "net/session_registry.h"
#include "store/store.h"

namespace chatd::net {

/// One WebSocket connection to a chat, from the upgrade to the close.
///
/// All of its work runs on its strand (the socket's executor). Committed
/// messages arrive from the store's commit thread through deliver(), which
/// only appends to the bounded send queue under a small mutex: the writer,
/// on the strand, is the socket's single writer. The session leaves the hub
/// and the registry in exactly one place, finish().
class WebSocketSession final : public chat::Subscriber,
                               public Closable,
                               public std::enable_shared_from_this<WebSocketSession> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  /// `socket`'s executor is the connection's strand.
  WebSocketSession(boost::asio::ip::tcp::socket socket, const Services& services);
  ~WebSocketSession() override;

  /// Takes over the upgrade request and runs the session until it closes.
  void start(Request request);

  // chat::Subscriber
  chat::ConnectionId connection_id() const override { return id_; }
  /// The connecting user: the token's subject with SECRET_KEY, else user1 of the path.
  const std::string& user() const override { return user_; }
  void deliver(const chat::MessagePtr& message,
               const std::shared_ptr<const std::string>& frame) override;
  void notify(const std::shared_ptr<const std::string>& frame) override;

  // Closable
  void close_for_shutdown() override;

 private:
  // A plain socket under the WebSocket stream: its timeouts are the
  // WebSocket stream's own (stream_base::timeout), and an idle connection
  // does not carry a beast::tcp_stream's two timers.
  using Stream = boost::beast::websocket::stream<boost::asio::ip::tcp::socket>;

  struct Outgoing {
    std::shared_ptr<const std::string> frame;                    ///< A text frame, or
    std::unique_ptr<boost::beast::websocket::close_reason> close;  ///< a close.
    /// When a live message's frame was read (for the latency metric); unset
    /// for history and error frames.
    std::chrono::steady_clock::time_point received_at{};
  };

  boost::asio::awaitable<void> run(std::unique_ptr<Request> request);
  /// From the upgrade to the joined chat (or the refusal). The request is
  /// freed when this returns: an open session does not keep it. False when
  /// the handshake failed, so that there is nothing to read.
  boost::asio::awaitable<bool> open(std::unique_ptr<Request> request);
  boost::asio::awaitable<bool> accept(const Request& request);
  /// Path, token and limits, in that order; the first refusal is the close to send.
  std::optional<boost::beast::websocket::close_reason> refusal(
      const Request& request, const std::variant<ChatPath, ChatPathError>& parsed);
  /// Sets user_ from the token (SECRET_KEY) or the path; a refusal is 4401 or 4403.
  std::optional<boost::beast::websocket::close_reason> authenticate(const Request& request);
  /// Counts the connection against the limits; a refusal is the reason.
  std::optional<std::string> admit();
  const std::string& peer() const { return user_ == path_.user1 ? path_.user2 : path_.user1; }
  enum class Protocol { v1, v2 };

  boost::asio::awaitable<bool> verify_users();
  /// Joins the hub, announces presence, and sends what the client sees first.
  boost::asio::awaitable<bool> join_chat();
  /// v1: the last HISTORY_LIMIT messages, one frame each.
  boost::asio::awaitable<bool> replay_v1();
  /// v2 (websocket_session_v2.cpp): hello, then the latest history page, or
  /// with `?after=` every later message, paged from the store.
  boost::asio::awaitable<bool> replay_v2();
  /// Ends the replay: live messages buffered meanwhile follow, past `last_seq`.
  void finish_replay(std::uint64_t last_seq);
  // The read loop, once the chat is joined (or refused): callbacks, not a
  // coroutine, so that an idle connection holds no coroutine frames, only
  // the pending read.
  void read_message();
  void on_read(boost::beast::error_code error, std::size_t bytes);
  /// A frame's store call (commit, receipt, history page) has answered:
  /// reading goes on if it was paused for it, the session ends if it waited for it.
  void send_done();
  /// Once, on the strand, after the read loop and the last pending send:
  /// leaves the hub and the registry.
  void finish();
  /// Waits until at most `bytes` are queued (or the session closes).
  boost::asio::awaitable<void> wait_for_queue_below(std::size_t bytes);
  void handle_frame(std::string_view payload);
  void handle_frame_v1(std::string_view payload);
  void handle_frame_v2(std::string_view payload);
  void send_history_page(std::uint64_t before, std::size_t limit);
  /// Stores a read receipt (v2 `read`), then tells the chat.
  void mark_read(std::uint64_t seq);
  /// The per-connection rate limit; false when this frame is refused.
  /// Takes one frame of the rate; past it an error frame naming `client_id` (v2 sends).
  bool take_rate_token(std::string_view client_id = {});
  void append(std::string sender, std::string text, std::string client_id);
  void on_committed(store::AppendResult result, const std::string& client_id);
  /// Sends an error frame for a refused message and counts it.
  void reject(std::string_view code, std::string_view message, std::string_view client_id = {});
  /// With a token: closes the session (4401) when the token expires.
  void watch_token_expiry();
  void announce_presence(std::size_t devices);
  void publish_event(std::string frame);

  bool is_closing();
  void send(std::string frame);
  void close(boost::beast::websocket::close_code code, std::string_view reason);
  // Appends under mutex_; returns whether the writer must be started.
  bool push_locked(Outgoing item);
  void write_next();

  Stream ws_;
  const Services& services_;
  const chat::ConnectionId id_;
  ChatPath path_;
  std::string user_;
  Protocol protocol_ = Protocol::v1;
  std::chrono::system_clock::time_point token_expires_at_{};  // unset without SECRET_KEY
  std::optional<boost::asio::steady_timer> token_timer_;       // only with SECRET_KEY
  std::optional<chat::ChatKey> chat_;
  std::chrono::steady_clock::time_point opened_at_;
  bool joined_ = false;
  std::unique_ptr<ConnectionLimits::Ticket> ticket_;  // counts this connection while it lives
  chat::TokenBucket send_rate_;                       // strand only
  chat::TokenBucket rate_strikes_;                    // strand only
  chat::TokenBucket typing_rate_;                     // strand only
  std::size_t pending_sends_ = 0;                     // strand only
  boost::beast::flat_buffer read_buffer_;             // strand only
  bool reading_ = false;       // strand only; the read loop has started
  bool read_paused_ = false;   // strand only; for pending sends (max_pending_sends)
  bool read_ended_ = false;    // strand only
  bool finished_ = false;      // strand only
  // Wakes the session's coroutine while it opens: when user lookups are
  // answered, when the replay may queue more, or when the session is closed
  // for shutdown.
  boost::asio::steady_timer wake_;

  std::mutex mutex_;  // guards the members below; never held across I/O
  // Allocates nothing while empty (a std::deque holds half a KiB even then);
  // released once drained after a burst, so an idle connection holds none.
  boost::container::devector<Outgoing> queue_;
  std::size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool closing_ = false;
  bool replaying_ = true;  // deliveries wait in replay_buffer_ until history is sent
  bool events_open_ = false;  // v2 events are queued once the hello is
  // The highest seq queued for this client. The fan-out runs after the commit,
  // so a message the replay read from the store may still be delivered live
  // afterwards: deliver() drops what is not past this.
  std::uint64_t last_seq_sent_ = 0;
  std::uint64_t last_seq_acked_ = 0;  // the highest seq of this connection's own sends
  std::size_t drain_waiter_ = 0;  // wait_for_queue_below's bound; 0 = nobody waits
  std::vector<std::pair<chat::MessagePtr, std::shared_ptr<const std::string>>> replay_buffer_;
  std::uint16_t close_code_ = 0;
};

}  // namespace chatd::net
