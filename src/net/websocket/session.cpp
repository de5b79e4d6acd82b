#include "net/websocket/session.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/version.hpp>
#include <boost/beast/websocket/error.hpp>

#include "chat/frames_v2.h"
#include "fanout/fanout.h"
#include "metrics/chatd_metrics.h"
#include "net/store_replies.h"
#include "net/websocket/close_codes.h"
#include "users/chat_users.h"

namespace chatd::net::websocket {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ws = beast::websocket;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

chat::ConnectionId next_connection_id() {
  static std::atomic<chat::ConnectionId> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

bool is_normal_end(const beast::error_code& error) {
  return error == ws::error::closed || error == asio::error::operation_aborted ||
         error == asio::error::eof || error == asio::error::connection_reset ||
         error == beast::error::timeout;
}

// Beast sizes the buffer before any data arrives: awaiting a whole message
// (async_read) would hold its 1,536-byte read size on every idle connection.
// A message's first read is limited to kFirstRead bytes (most chat messages
// fit); the rest of a longer one is read as it comes.
constexpr std::size_t kFirstRead = 512;
// A buffer grown by a long message is given back after it.
constexpr std::size_t kKeptReadCapacity = 4096;
// The writer sends what is queued in one write of at most this many frames
// (two buffers each: Asio hands at most 64 to one sendmsg) and bytes.
constexpr std::size_t kMaxFramesPerWrite = 32;
constexpr std::size_t kMaxBytesPerWrite = 256 * 1024;
constexpr std::size_t kKeptBatchCapacity = 4;

}  // namespace

Session::Session(asio::ip::tcp::socket socket, const Services& services)
    : ws_(std::move(socket)),
      services_(services),
      id_(next_connection_id()),
      queue_(services_.options.send_queue_max_bytes, &services_.metrics.send_queue_bytes),
      wake_(ws_.get_executor()),
      opened_at_(std::chrono::steady_clock::now()),
      send_rate_(services_.options.messages_per_second, services_.options.message_burst),
      // Strikes refill at a tenth of their number a second: a client that
      // keeps sending past the limit for about ten seconds is closed.
      rate_strikes_(services_.options.rate_limit_strikes / 10,
                    services_.options.rate_limit_strikes) {}

Session::~Session() {
  if (accepted_) {
    const auto seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - opened_at_).count();
    // 1006: the connection ended without a close frame from either side.
    std::uint16_t code = queue_.close_code();
    if (code == 0) code = read_close_code_;
    if (code == 0) code = ws_.reason().code;
    if (code == 0) code = 1006;
    services_.metrics.closed(code);
    spdlog::info("session {} closed: {} -> {}, {:.1f} s, code {}", id_, user_, peer(), seconds,
                 code);
  }
  if (joined_) announce_presence(services_.hub.leave(*chat_, *this));
  services_.registry.remove(this);
}

void Session::start(Request request) {
  services_.registry.add(shared_from_this());
  asio::co_spawn(ws_.get_executor(), open(std::make_unique<Request>(std::move(request))),
                 [self = shared_from_this()](std::exception_ptr error, bool opened) {
                   // open() handles its errors; an exception here is a bug.
                   if (error) {
                     try {
                       std::rethrow_exception(error);
                     } catch (const std::exception& e) {
                       spdlog::error("session {} ended by an exception: {}", self->id_, e.what());
                     }
                     return;
                   }
                   // Until the client closes, or answers chatd's close.
                   if (opened) self->read_next();
                 });
}

// ---------------------------------------------------------------------------
// Opening: handshake, admission, users, join, replay
// ---------------------------------------------------------------------------

asio::awaitable<bool> Session::open(std::unique_ptr<Request> request) {
  // Results of co_await are kept in named locals, never tested inline in an
  // `if`: GCC 12 miscompiles `if (co_await f())` in some coroutines.
  const ProtocolVersion version =
      negotiate_protocol((*request)[beast::http::field::sec_websocket_protocol]);
  const bool accepted_now = co_await accept(*request, version);
  if (!accepted_now) co_return false;
  accepted_ = true;

  boost::system::error_code error;
  const auto remote = ws_.next_layer().next_layer().remote_endpoint(error);
  auto admission = error ? std::variant<Admitted, Refused>(Refused{kTooMany, "connection lost"})
                         : admit(*request, remote.address(), services_.tokens, services_.limits);
  request.reset();
  if (auto* refused = std::get_if<Refused>(&admission)) {
    // The target is not logged: its query may carry a token.
    spdlog::info("session {} refused: {}", id_, refused->reason);
    close(refused->code, refused->reason);
    co_return true;  // read on, for the client's answer to the close
  }
  auto& admitted = std::get<Admitted>(admission);
  path_ = std::move(admitted.path);
  user_ = std::move(admitted.user);
  ticket_ = std::move(admitted.ticket);
  chat_ = chat::ChatKey::of(path_.user1, path_.user2);
  v1_ = version == ProtocolVersion::v1;
  peer_needle_ = "\"user\":\"" + peer() + "\"";

  const bool verified = co_await verify_users();
  if (!verified) co_return true;
  // Join first, then read: a message committed after the join reaches the
  // send queue's replay buffer, one committed before it is in the store, and
  // one in both is told apart by its seq. Nothing falls in between.
  announce_presence(services_.hub.join(*chat_, shared_from_this()));
  joined_ = true;
  protocol_ = make_protocol(version, *this);
  const bool replayed = co_await protocol_->open();
  if (!replayed) co_return true;
  ready_ = true;
  watch_token_expiry(admitted.token_expires_at);
  services_.metrics.sessions_opened.inc();
  spdlog::info("session {} open: {} -> {}", id_, user_, peer());
  co_return true;
}

asio::awaitable<bool> Session::accept(const Request& request, ProtocolVersion version) {
  // Beast's WebSocket timeouts (with keep-alive pings sent after half the
  // idle time) take over from the HTTP read's deadline.
  ws_.set_option(ws::stream_base::timeout{services_.options.handshake_timeout,
                                          services_.options.idle_timeout, true});
  ws_.set_option(ws::stream_base::decorator(
      [v2 = version == ProtocolVersion::v2](ws::response_type& response) {
        response.set(beast::http::field::server, "chatd/" CHATD_VERSION);
        if (v2) response.set(beast::http::field::sec_websocket_protocol, chat::v2::kSubprotocol);
      }));
  ws_.read_message_max(services_.options.max_message_bytes);
  const auto [error] = co_await ws_.async_accept(request, use_tuple);
  if (error) {
    spdlog::debug("session {}: handshake failed: {}", id_, error.message());
    co_return false;
  }
  co_return true;
}

asio::awaitable<bool> Session::verify_users() {
  // The session waits on a timer that the answer, or a close (shutdown),
  // cancels: a drain must not wait for a slow user-search service. So the
  // lookups do not hold the session: one closed meanwhile ends without
  // waiting for their answers.
  auto verdict = std::make_shared<std::optional<users::ChatUsers>>();
  users::verify_chat_users(
      services_.users, path_.user1, path_.user2,
      asio::bind_executor(ws_.get_executor(),
                          [weak = weak_from_this(), verdict](users::ChatUsers answer) {
                            *verdict = std::move(answer);
                            if (const auto self = weak.lock()) self->wake_.cancel();
                          }));
  wake_.expires_at(std::chrono::steady_clock::time_point::max());
  if (!*verdict && !queue_.closing()) co_await wake_.async_wait(use_tuple);
  if (!*verdict) co_return false;  // closed while waiting
  switch ((*verdict)->status) {
    case users::UserStatus::found:
      co_return true;
    case users::UserStatus::unavailable:
      close(kTryAgainLater, "user-search service unavailable");
      co_return false;
    case users::UserStatus::not_found:
      // A close reason is at most 123 bytes; a username at most 64.
      close(kUnknownUser, "unknown user: " + (*verdict)->unknown);
      co_return false;
  }
  co_return false;
}

void Session::watch_token_expiry(std::chrono::system_clock::time_point expires_at) {
  if (expires_at == std::chrono::system_clock::time_point{}) return;  // no token
  const auto left = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      expires_at - std::chrono::system_clock::now());
  token_timer_.emplace(ws_.get_executor());
  token_timer_->expires_after(left);
  token_timer_->async_wait([weak = weak_from_this()](const beast::error_code& error) {
    if (error) return;  // the session ended first
    if (const auto self = weak.lock()) self->close(kUnauthorized, "unauthorized: expired");
  });
}

void Session::announce_presence(std::size_t devices) {
  services_.fanout.presence_changed(*chat_, id_, user_, devices);
}

// ---------------------------------------------------------------------------
// The read loop
// ---------------------------------------------------------------------------

void Session::read_next() {
  ws_.async_read_some(read_buffer_, kFirstRead,
                      beast::bind_front_handler(&Session::on_read, shared_from_this()));
}

void Session::on_read(beast::error_code error, std::size_t /*bytes*/) {
  if (!error && !ws_.is_message_done()) {
    ws_.async_read_some(read_buffer_, 0,
                        beast::bind_front_handler(&Session::on_read, shared_from_this()));
    return;
  }
  if (error) {
    if (error == ws::error::message_too_big) {
      read_close_code_ = static_cast<std::uint16_t>(ws::close_code::too_big);
    } else if (!is_normal_end(error)) {
      spdlog::debug("session {}: read failed: {}", id_, error.message());
    }
    // No read follows: the session ends once its store calls have answered
    // and the writer is done, whichever is last.
    return;
  }
  // Frames of a refused or still opening session are not read as anything.
  if (ready_ && !queue_.closing()) {
    if (!ws_.got_text()) {
      reject("unsupported_frame", "binary frames are not supported");
    } else if (services_.draining.load(std::memory_order_relaxed)) {
      reject("shutting_down", "server is shutting down; message not stored");
    } else {
      protocol_->handle(std::string_view(static_cast<const char*>(read_buffer_.data().data()),
                                         read_buffer_.size()));
    }
  }
  read_buffer_.consume(read_buffer_.size());
  if (read_buffer_.capacity() > kKeptReadCapacity) read_buffer_.shrink_to_fit();
  if (reading_held()) {
    read_paused_ = true;  // resume_reading() reads on
    wait_for_budget();
    return;
  }
  read_next();
}

bool Session::reading_held() const {
  return store_calls_ >= services_.options.max_store_calls || exclusive_ != 0 ||
         (services_.store_budget != nullptr && services_.store_budget->spent());
}

void Session::resume_reading() {
  if (!read_paused_) return;
  if (!reading_held()) {
    read_paused_ = false;
    read_next();
    return;
  }
  wait_for_budget();
}

void Session::wait_for_budget() {
  StoreCallBudget* budget = services_.store_budget;
  if (waiting_budget_ || budget == nullptr || !budget->spent()) return;
  waiting_budget_ = true;
  // The waiter keeps the session alive: while it reads nothing, no other
  // operation of its own may be pending to do so.
  budget->wait([self = shared_from_this(), executor = ws_.get_executor()]() mutable {
    asio::post(executor, [self = std::move(self)] {
      self->waiting_budget_ = false;
      self->resume_reading();
    });
  });
}

void Session::store_call_done() {
  --store_calls_;
  if (services_.store_budget != nullptr) services_.store_budget->give_back();
  resume_reading();
}

void Session::run_exclusive(asio::awaitable<void> work) {
  ++exclusive_;
  asio::co_spawn(ws_.get_executor(), std::move(work),
                 [self = shared_from_this()](std::exception_ptr error) {
                   if (error) spdlog::error("session {}: an answer failed", self->id_);
                   --self->exclusive_;
                   self->resume_reading();
                 });
}

// ---------------------------------------------------------------------------
// What the protocols use
// ---------------------------------------------------------------------------

bool Session::take_rate_token(std::string_view client_id) {
  if (send_rate_.try_take()) return true;
  if (!rate_strikes_.try_take()) {
    services_.metrics.rejected("rate_limited");
    close(kTooMany, "message rate limit exceeded repeatedly");
    return false;
  }
  reject("rate_limited", "too many messages; message not stored, slow down", client_id);
  return false;
}

void Session::commit(std::string sender, std::string text, std::string client_id) {
  services_.metrics.messages_received.inc();
  auto pending = chat::PendingMessage{
      *chat_, std::move(sender), std::move(text), client_id, id_, std::chrono::steady_clock::now()};
  services_.store.append(std::move(pending),
                         store_call([this, id = std::move(client_id)](store::AppendResult result) {
                           protocol_->committed(result, id);
                         }));
}

void Session::commit_change(chat::EntryKind kind, std::string client_id, std::uint64_t target,
                            std::string target_id, std::string text) {
  chat::PendingMessage pending{*chat_,    user_, std::move(text),
                               client_id, id_,   std::chrono::steady_clock::now()};
  pending.kind = kind;
  pending.target = target;
  pending.target_id = std::move(target_id);
  pending.edit_window_ms = services_.options.edit_window.count();
  services_.store.append(std::move(pending),
                         store_call([this, id = std::move(client_id)](store::AppendResult result) {
                           protocol_->committed(result, id);
                         }));
}

bool Session::shows(const chat::Message& entry) const {
  if (!chat::is_change(entry.kind)) return true;
  if (v1_ || entry.kind == chat::EntryKind::filler) return false;
  if (entry.kind == chat::EntryKind::block || entry.kind == chat::EntryKind::unblock) {
    return entry.sender == user_;
  }
  return true;
}

void Session::publish_event(std::string frame) {
  services_.fanout.publish_event(*chat_, id_,
                                 std::make_shared<const std::string>(std::move(frame)));
}

void Session::reply(std::string frame) {
  pushed(queue_.reply(std::move(frame)), true);
}

void Session::reject(std::string_view code, std::string_view message, std::string_view client_id) {
  services_.metrics.rejected(code);
  reply(chat::v2::error_frame(code, message, client_id));
}

void Session::reject_store_error(store::StoreError error, std::string_view what,
                                 std::string_view client_id) {
  const StoreReply answer = store_reply(error, what);
  reject(answer.code, answer.message, client_id);
}

void Session::close(std::uint16_t code, std::string_view reason) {
  pushed(queue_.close(code, std::string(reason)), true);
  wake_.cancel();  // a wait for users or for room ends now
}

void Session::close_for_shutdown() {
  asio::post(ws_.get_executor(),
             [self = shared_from_this()] { self->close(kGoingAway, "server shutting down"); });
}

asio::awaitable<bool> Session::wait_for_room(std::size_t bytes) {
  const auto deadline = std::chrono::steady_clock::now() + services_.options.send_stall_timeout;
  while (!queue_.wait_for_room(bytes)) {
    wake_.expires_at(deadline);
    const auto [error] = co_await wake_.async_wait(use_tuple);
    if (!error) {
      // Nothing left the queue for SEND_STALL_TIMEOUT_MS.
      pushed(queue_.close_too_slow(), true, "its send queue stayed full for SEND_STALL_TIMEOUT_MS");
      co_return false;
    }
  }
  co_return !queue_.closing();
}

asio::awaitable<bool> Session::send_paced(std::string frame, std::uint64_t seq) {
  auto shared = std::make_shared<const std::string>(std::move(frame));
  for (;;) {
    const SendQueue::Result result = queue_.paced(shared, seq);
    if (result.status != SendQueue::Status::no_room) {
      pushed(result, true);
      co_return !queue_.closing();
    }
    const bool room = co_await wait_for_room(shared->size());
    if (!room) co_return false;
  }
}

bool Session::finish_replay() {
  bool caught_up = false;
  pushed(queue_.finish_replay(caught_up), true);
  return caught_up;
}

// ---------------------------------------------------------------------------
// Outgoing frames: one bounded queue, one writer
// ---------------------------------------------------------------------------

void Session::deliver(const chat::MessagePtr& message,
                      const std::shared_ptr<const std::string>& frame) {
  if (message->kind == chat::EntryKind::block || message->kind == chat::EntryKind::unblock) {
    if (message->sender != user_) set_peer_blocks_me(message->kind == chat::EntryKind::block);
  }
  if (!shows(*message)) return;
  pushed(queue_.deliver(message, frame), false);
}

void Session::notify(const std::shared_ptr<const std::string>& frame) {
  // The peer's typing, presence and receipts, while it blocks "me".
  if (peer_blocks_me_.load(std::memory_order_relaxed) &&
      frame->find(peer_needle_) != std::string::npos) {
    return;
  }
  const SendQueue::Result result = queue_.notify(frame);  // v1: the queue never opens events
  if (result.status == SendQueue::Status::dropped) services_.metrics.events_dropped.inc();
  pushed(result, false);
}

void Session::pushed(SendQueue::Result result, bool on_strand, std::string_view why) {
  const bool too_slow = result.status == SendQueue::Status::too_slow;
  if (too_slow) {
    spdlog::warn("session {} ({}): closing as too slow: {}", id_, user_, why);
    services_.metrics.slow_reader_closes.inc();
  }
  if (!result.start_writer && !too_slow) return;
  if (on_strand) {
    if (too_slow) wake_.cancel();
    if (result.start_writer) write_next();
    return;
  }
  asio::post(ws_.get_executor(), [self = shared_from_this(), result, too_slow] {
    if (too_slow) self->wake_.cancel();  // a wait for room ends now
    if (result.start_writer) self->write_next();
  });
}

void Session::write_next() {
  if (!queue_.take(batch_, kMaxFramesPerWrite, kMaxBytesPerWrite)) {
    // Idle: a burst's room is given back.
    if (batch_.frames.capacity() > kKeptBatchCapacity)
      decltype(batch_.frames)().swap(batch_.frames);
    if (read_at_.capacity() > kKeptBatchCapacity) decltype(read_at_)().swap(read_at_);
    return;  // the writer is idle until the next push starts it
  }
  if (batch_.close) {
    wake_.cancel();  // a wait for room ends now
    ws_.async_close(
        ws::close_reason(static_cast<ws::close_code>(batch_.close->code), batch_.close->reason),
        [self = shared_from_this()](const beast::error_code& error) {
          if (error && !is_normal_end(error)) {
            spdlog::debug("session {}: close failed: {}", self->id_, error.message());
          }
          // The read loop ends when the peer answers or the close times out.
        });
    return;
  }
  if (!ws_.is_open()) {
    // Beast is closing the connection (the client's close frame came in):
    // no frame may follow the close.
    written(ws::error::closed);
    return;
  }
  ws_.next_layer().write_frames(
      batch_.frames, [self = shared_from_this()](const beast::error_code& error, std::size_t) {
        self->written(error);
      });
}

void Session::written(const beast::error_code& error) {
  read_at_.clear();
  const SendQueue::Popped popped = queue_.pop(static_cast<bool>(error), &read_at_);
  if (popped.wake) wake_.cancel();
  if (error) {
    if (!is_normal_end(error)) spdlog::debug("session {}: write failed: {}", id_, error.message());
    return;
  }
  if (!read_at_.empty()) {
    auto& metrics = services_.metrics;
    const auto now = std::chrono::steady_clock::now();
    metrics.messages_delivered.inc(read_at_.size());
    for (const auto read_at : read_at_) {
      metrics.delivery_seconds.observe(std::chrono::duration<double>(now - read_at).count());
    }
  }
  write_next();
}

}  // namespace chatd::net::websocket
