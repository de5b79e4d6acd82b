#include "net/websocket_session.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/version.hpp>
#include <boost/beast/websocket/error.hpp>

#include "auth/chat_identity.h"
#include "auth/token_verifier.h"
#include "chat/frames.h"
#include "chat/frames_v2.h"
#include "fanout/fanout.h"
#include "metrics/chatd_metrics.h"
#include "store/store.h"
#include "users/user_directory.h"
#include "util/header_list.h"

namespace chatd::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::use_awaitable;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

chat::ConnectionId next_connection_id() {
  static std::atomic<chat::ConnectionId> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// chatd's close codes (SPEC §3) beyond the standard ones.
constexpr websocket::close_code kBadPath = static_cast<websocket::close_code>(4400);
constexpr websocket::close_code kUnauthorized = static_cast<websocket::close_code>(4401);
constexpr websocket::close_code kForbidden = static_cast<websocket::close_code>(4403);
constexpr websocket::close_code kUnknownUser = static_cast<websocket::close_code>(4404);
constexpr websocket::close_code kTooMany = static_cast<websocket::close_code>(4429);

// Queued frames whose room an emptied send queue keeps for the next ones
// (32 B each): more is given back, so a quiet connection holds almost none.
constexpr std::size_t kKeptQueueCapacity = 4;

bool is_normal_end(const beast::error_code& error) {
  return error == websocket::error::closed || error == asio::error::operation_aborted ||
         error == asio::error::eof || error == asio::error::connection_reset ||
         error == beast::error::timeout;
}

}  // namespace

WebSocketSession::WebSocketSession(asio::ip::tcp::socket socket, const Services& services)
    : ws_(std::move(socket)),
      services_(services),
      id_(next_connection_id()),
      opened_at_(std::chrono::steady_clock::now()),
      send_rate_(services_.options.messages_per_second, services_.options.message_burst),
      // Strikes refill at a tenth of their number a second: a client that
      // keeps sending past the limit for about ten seconds is closed.
      rate_strikes_(services_.options.rate_limit_strikes / 10,
                    services_.options.rate_limit_strikes),
      // Typing events: a client sends one when typing starts and stops; more
      // than a few a second is noise and is dropped.
      typing_rate_(2, 5),
      wake_(ws_.get_executor()) {}

WebSocketSession::~WebSocketSession() = default;

void WebSocketSession::start(Request request) {
  services_.registry.add(shared_from_this());
  asio::co_spawn(ws_.get_executor(), run(std::make_unique<Request>(std::move(request))),
                 [self = shared_from_this()](std::exception_ptr error) {
                   // run() handles its errors; an exception here is a bug.
                   if (error) {
                     try {
                       std::rethrow_exception(error);
                     } catch (const std::exception& e) {
                       spdlog::error("session {} ended by an exception: {}", self->id_, e.what());
                     }
                   }
                   if (!self->reading_) self->finish();  // else the read loop ends it
                 });
}

// ---------------------------------------------------------------------------
// The life of a session
// ---------------------------------------------------------------------------

asio::awaitable<void> WebSocketSession::run(std::unique_ptr<Request> request) {
  // Results of co_await are kept in named locals, never tested inline in an
  // `if`: GCC 12 miscompiles `if (co_await f())` in some coroutines.
  const bool opened = co_await open(std::move(request));
  // Until the client closes, or answers chatd's close.
  if (opened) read_message();
}

void WebSocketSession::finish() {
  if (finished_) return;
  finished_ = true;
  if (reading_) {
    const auto seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - opened_at_).count();
    // 1006: the connection ended without a close frame from either side.
    const std::uint16_t code = close_code_ != 0         ? close_code_
                               : ws_.reason().code != 0 ? ws_.reason().code
                                                        : 1006;
    services_.metrics.closed(code);
    spdlog::info("session {} closed: {} -> {}, {:.1f} s, code {}", id_, user_, peer(), seconds,
                 code);
  }
  if (joined_) announce_presence(services_.hub.leave(*chat_, *this));
  services_.registry.remove(this);
}

asio::awaitable<bool> WebSocketSession::open(std::unique_ptr<Request> request) {
  const auto parsed = parse_chat_path(request->target());
  const bool accepted = co_await accept(*request);
  if (!accepted) co_return false;
  if (const auto refused = refusal(*request, parsed)) {
    // The target is not logged: its query may carry a token.
    spdlog::info("session {} refused: {} ({} -> {})", id_, refused->reason.c_str(), path_.user1,
                 path_.user2);
    close(static_cast<websocket::close_code>(refused->code), refused->reason.c_str());
  } else {
    chat_ = chat::ChatKey::of(path_.user1, path_.user2);
    const bool verified = co_await verify_users();
    bool joined = false;
    if (verified) joined = co_await join_chat();
    if (joined) {
      watch_token_expiry();
      services_.metrics.sessions_opened.inc();
      spdlog::info("session {} open: {} -> {}", id_, user_, peer());
    }
  }
  co_return true;
}

std::optional<websocket::close_reason> WebSocketSession::refusal(
    const Request& request, const std::variant<ChatPath, ChatPathError>& parsed) {
  if (const auto* error = std::get_if<ChatPathError>(&parsed)) {
    return websocket::close_reason(kBadPath, error->reason);
  }
  path_ = std::get<ChatPath>(parsed);
  if (auto refused = authenticate(request)) return refused;
  if (const auto reason = admit()) return websocket::close_reason(kTooMany, *reason);
  return std::nullopt;
}

std::optional<websocket::close_reason> WebSocketSession::authenticate(const Request& request) {
  std::optional<std::string> token;
  if (services_.tokens != nullptr) {
    token = auth::extract_token(path_.token, request[beast::http::field::authorization],
                                request[beast::http::field::sec_websocket_protocol]);
  }
  auto identity = auth::identify_in_chat(services_.tokens, token, path_.user1, path_.user2);
  switch (identity.refusal) {
    case auth::ChatIdentity::Refusal::unauthorized:
      return websocket::close_reason(kUnauthorized, identity.reason);
    case auth::ChatIdentity::Refusal::forbidden:
      return websocket::close_reason(kForbidden, identity.reason);
    case auth::ChatIdentity::Refusal::none:
      break;
  }
  user_ = std::move(identity.user);
  token_expires_at_ = identity.expires_at;
  return std::nullopt;
}

void WebSocketSession::watch_token_expiry() {
  if (token_expires_at_ == std::chrono::system_clock::time_point{}) return;
  const auto left = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      token_expires_at_ - std::chrono::system_clock::now());
  token_timer_.emplace(ws_.get_executor());
  token_timer_->expires_after(left);
  token_timer_->async_wait([weak = weak_from_this()](const beast::error_code& error) {
    if (error) return;  // the session ended first
    if (const auto self = weak.lock()) self->close(kUnauthorized, "unauthorized: expired");
  });
}

std::optional<std::string> WebSocketSession::admit() {
  std::string reason;
  boost::system::error_code error;
  const auto remote = ws_.next_layer().remote_endpoint(error);
  if (error) return "connection lost";
  ticket_ = services_.limits.admit(remote.address(), reason);
  if (!ticket_ || !services_.limits.admit_user(*ticket_, user_, reason)) return reason;
  return std::nullopt;
}

asio::awaitable<bool> WebSocketSession::accept(const Request& request) {
  // Beast's WebSocket timeouts (with keep-alive pings sent after half the
  // idle time) take over from the HTTP read's deadline.
  ws_.set_option(websocket::stream_base::timeout{services_.options.handshake_timeout,
                                                 services_.options.idle_timeout, true});
  // v2 when the client offers chat.v2; a token carried as a subprotocol is never selected.
  for (const auto entry :
       util::split_header_list(request[beast::http::field::sec_websocket_protocol])) {
    if (entry == chat::v2::kSubprotocol) protocol_ = Protocol::v2;
  }
  ws_.set_option(websocket::stream_base::decorator(
      [v2 = protocol_ == Protocol::v2](websocket::response_type& response) {
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

asio::awaitable<bool> WebSocketSession::verify_users() {
  // Both lookups run at once. The session waits on a timer that the last
  // answer, or a close (shutdown), cancels: a drain must not wait for a slow
  // user-search service.
  auto answers = std::make_shared<std::array<std::optional<users::UserStatus>, 2>>();
  const auto executor = ws_.get_executor();
  for (std::size_t i = 0; i < 2; ++i) {
    users::async_verify(services_.users, i == 0 ? path_.user1 : path_.user2,
                        asio::bind_executor(executor, [self = shared_from_this(), answers,
                                                       i](users::UserStatus status) {
                          (*answers)[i] = status;
                          if ((*answers)[0] && (*answers)[1]) self->wake_.cancel();
                        }));
  }
  wake_.expires_at(std::chrono::steady_clock::time_point::max());
  if (!is_closing()) co_await wake_.async_wait(use_tuple);
  if (!(*answers)[0] || !(*answers)[1]) co_return false;  // closed while waiting
  const users::UserStatus first = *(*answers)[0];
  const users::UserStatus second = *(*answers)[1];
  if (first == users::UserStatus::unavailable || second == users::UserStatus::unavailable) {
    close(websocket::close_code::try_again_later, "user-search service unavailable");
    co_return false;
  }
  for (const auto& [status, name] : {std::pair{first, &path_.user1}, {second, &path_.user2}}) {
    if (status == users::UserStatus::not_found) {
      // A close reason is at most 123 bytes; a username at most 64.
      close(kUnknownUser, "unknown user: " + *name);
      co_return false;
    }
  }
  co_return true;
}

asio::awaitable<bool> WebSocketSession::join_chat() {
  // Join first, then read: a message committed after the join reaches the
  // replay buffer, one committed before it is in the history, and one in
  // both is told apart by its sequence number. Nothing falls in between.
  const std::size_t devices = services_.hub.join(*chat_, shared_from_this());
  joined_ = true;
  announce_presence(devices);
  const bool replayed = protocol_ == Protocol::v2 ? co_await replay_v2() : co_await replay_v1();
  co_return replayed;
}

asio::awaitable<bool> WebSocketSession::replay_v1() {
  store::HistoryQuery query;
  query.limit = services_.options.history_limit;
  store::HistoryPage page =
      co_await store::async_history(services_.store, *chat_, query, use_awaitable);
  if (page.error != store::StoreError::none) {
    close(websocket::close_code::try_again_later, "message store unavailable");
    co_return false;
  }
  std::uint64_t last_seq = 0;
  for (const auto& message : page.messages) {
    send(chat::message_frame(*message));
    last_seq = message->seq;
  }
  finish_replay(last_seq);
  co_return !is_closing();  // closed as too slow while the history was read
}

void WebSocketSession::finish_replay(std::uint64_t last_seq) {
  bool start_writer = false;
  {
    std::lock_guard lock(mutex_);
    last_seq_sent_ = last_seq;
    for (const auto& [message, frame] : replay_buffer_) {
      queued_bytes_ -= frame->size();
      if (message->seq > last_seq_sent_ && !closing_) {
        start_writer |= push_locked(Outgoing{frame, {}, message->received_at});
        last_seq_sent_ = message->seq;
      }
    }
    replay_buffer_.clear();
    replaying_ = false;
  }
  if (start_writer) write_next();
}

// Beast sizes the buffer before any data arrives: awaiting a whole message
// (async_read) would hold its 1,536-byte read size on every idle connection.
// A message's first read is limited to kFirstRead bytes (most chat messages
// fit); the rest of a longer one is read as it comes.
constexpr std::size_t kFirstRead = 512;
// A buffer grown by a long message is given back after it.
constexpr std::size_t kKeptReadCapacity = 4096;

void WebSocketSession::read_message() {
  reading_ = true;
  ws_.async_read_some(read_buffer_, kFirstRead,
                      beast::bind_front_handler(&WebSocketSession::on_read, shared_from_this()));
}

void WebSocketSession::on_read(beast::error_code error, std::size_t /*bytes*/) {
  if (!error && !ws_.is_message_done()) {
    ws_.async_read_some(read_buffer_, 0,
                        beast::bind_front_handler(&WebSocketSession::on_read, shared_from_this()));
    return;
  }
  if (error) {
    if (error == websocket::error::message_too_big) {
      close_code_ = static_cast<std::uint16_t>(websocket::close_code::too_big);
    } else if (!is_normal_end(error)) {
      spdlog::debug("session {}: read failed: {}", id_, error.message());
    }
    read_ended_ = true;
    // Replies to frames already read finish before the session ends.
    if (pending_sends_ == 0) finish();
    return;
  }
  if (!is_closing()) {
    if (!ws_.got_text()) {
      reject("unsupported_frame", "binary frames are not supported");
    } else {
      handle_frame(std::string_view(static_cast<const char*>(read_buffer_.data().data()),
                                    read_buffer_.size()));
    }
  }
  read_buffer_.consume(read_buffer_.size());
  if (read_buffer_.capacity() > kKeptReadCapacity) read_buffer_.shrink_to_fit();
  if (pending_sends_ >= services_.options.max_pending_sends) {
    read_paused_ = true;  // send_done() reads on
    return;
  }
  read_message();
}

void WebSocketSession::send_done() {
  --pending_sends_;
  if (read_paused_ && pending_sends_ < services_.options.max_pending_sends) {
    read_paused_ = false;
    read_message();
  } else if (read_ended_ && pending_sends_ == 0) {
    finish();
  }
}

asio::awaitable<void> WebSocketSession::wait_for_queue_below(std::size_t bytes) {
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (closing_ || queued_bytes_ <= bytes || !writing_) break;
      drain_waiter_ = std::max<std::size_t>(bytes, 1);  // the writer wakes us (write_next)
    }
    wake_.expires_at(std::chrono::steady_clock::time_point::max());
    co_await wake_.async_wait(use_tuple);
  }
}

// ---------------------------------------------------------------------------
// Incoming frames
// ---------------------------------------------------------------------------

void WebSocketSession::handle_frame(std::string_view payload) {
  if (!chat_ || replaying_) return;  // not (yet) a verified chat: ignore
  if (services_.draining.load(std::memory_order_relaxed)) {
    reject("shutting_down", "server is shutting down; message not stored");
    return;
  }
  if (protocol_ == Protocol::v2) {
    handle_frame_v2(payload);
  } else if (take_rate_token()) {
    handle_frame_v1(payload);
  }
}

bool WebSocketSession::take_rate_token(std::string_view client_id) {
  if (send_rate_.try_take()) return true;
  if (!rate_strikes_.try_take()) {
    services_.metrics.rejected("rate_limited");
    close(kTooMany, "message rate limit exceeded repeatedly");
    return false;
  }
  reject("rate_limited", "too many messages; message not stored, slow down", client_id);
  return false;
}

void WebSocketSession::handle_frame_v1(std::string_view payload) {
  const chat::FrameLimits limits{services_.options.max_text_bytes};
  auto parsed = chat::parse_v1_frame(payload, *chat_, limits);
  if (auto* error = std::get_if<chat::FrameError>(&parsed)) {
    reject(error->code, error->message);
    return;
  }
  auto& request = std::get<chat::SendRequest>(parsed);
  if (services_.tokens != nullptr && request.sender != user_) {
    // SPEC §2: with tokens the stored sender is always the token's subject.
    reject("sender_not_authenticated",
           "sender \"" + request.sender + "\" is not the authenticated user \"" + user_ + "\"");
    return;
  }
  append(std::move(request.sender), std::move(request.text), {});
}

void WebSocketSession::append(std::string sender, std::string text, std::string client_id) {
  ++pending_sends_;
  services_.metrics.messages_received.inc();
  auto on_done = [self = shared_from_this(), id = client_id](store::AppendResult result) {
    self->on_committed(std::move(result), id);
  };
  services_.store.append(
      chat::PendingMessage{*chat_, std::move(sender), std::move(text), std::move(client_id), id_,
                           std::chrono::steady_clock::now()},
      asio::bind_executor(ws_.get_executor(), std::move(on_done)));
}

void WebSocketSession::on_committed(store::AppendResult result, const std::string& client_id) {
  send_done();
  switch (result.error) {
    case store::StoreError::none:
      // v1: no echo; v2: the ack. The other connections already have it.
      if (protocol_ == Protocol::v2) {
        {
          std::lock_guard lock(mutex_);
          last_seq_acked_ = std::max(last_seq_acked_, result.message->seq);
        }
        send(chat::v2::ack_frame(*result.message, result.duplicate));
      }
      return;
    case store::StoreError::overloaded:
      reject("overloaded", "server is overloaded; message not stored, retry", client_id);
      return;
    case store::StoreError::shutting_down:
      reject("shutting_down", "server is shutting down; message not stored", client_id);
      return;
    case store::StoreError::unavailable:
      reject("store_unavailable", "message store unavailable; message not stored", client_id);
      return;
  }
}

void WebSocketSession::reject(std::string_view code, std::string_view message,
                              std::string_view client_id) {
  services_.metrics.rejected(code);
  send(chat::v2::error_frame(code, message, client_id));
}

void WebSocketSession::announce_presence(std::size_t devices) {
  services_.fanout.presence_changed(*chat_, id_, user_, devices);
}

void WebSocketSession::publish_event(std::string frame) {
  services_.fanout.publish_event(*chat_, id_, std::make_shared<const std::string>(std::move(frame)));
}

// ---------------------------------------------------------------------------
// Outgoing frames: one bounded queue, one writer
// ---------------------------------------------------------------------------

void WebSocketSession::deliver(const chat::MessagePtr& message,
                               const std::shared_ptr<const std::string>& frame) {
  bool start_writer = false;
  {
    std::lock_guard lock(mutex_);
    if (closing_) return;
    if (!replaying_ && message->seq <= last_seq_sent_) return;  // the replay had it
    if (queued_bytes_ + frame->size() > services_.options.send_queue_max_bytes) {
      // A receiver this slow would make chatd hold its backlog without bound.
      // Drop what it has not started receiving and close: the store has every
      // message, so a reconnecting client loses nothing.
      spdlog::warn("session {} ({}): send queue over {} bytes, closing as too slow", id_, user_,
                   services_.options.send_queue_max_bytes);
      services_.metrics.slow_reader_closes.inc();
      while (queue_.size() > (writing_ ? 1u : 0u)) {
        queued_bytes_ -= queue_.back().frame ? queue_.back().frame->size() : 0;
        queue_.pop_back();
      }
      for (const auto& buffered : replay_buffer_) queued_bytes_ -= buffered.second->size();
      replay_buffer_.clear();
      start_writer =
          push_locked(Outgoing{nullptr, std::make_unique<websocket::close_reason>(
                                            websocket::close_code::policy_error,
                                            "receiver too slow")});
    } else if (replaying_) {
      queued_bytes_ += frame->size();
      replay_buffer_.emplace_back(message, frame);
    } else {
      start_writer = push_locked(Outgoing{frame, {}, message->received_at});
      last_seq_sent_ = message->seq;
    }
  }
  if (start_writer) {
    asio::post(ws_.get_executor(), [self = shared_from_this()] { self->write_next(); });
  }
}

void WebSocketSession::notify(const std::shared_ptr<const std::string>& frame) {
  if (protocol_ != Protocol::v2) return;  // v1 clients never see events
  bool start_writer = false;
  {
    std::lock_guard lock(mutex_);
    // Events are best effort: none before the hello, none past the queue's bound.
    if (closing_ || !events_open_ ||
        queued_bytes_ + frame->size() > services_.options.send_queue_max_bytes) {
      return;
    }
    start_writer = push_locked(Outgoing{frame, {}});
  }
  if (start_writer) {
    asio::post(ws_.get_executor(), [self = shared_from_this()] { self->write_next(); });
  }
}

void WebSocketSession::send(std::string frame) {
  bool start_writer = false;
  {
    std::lock_guard lock(mutex_);
    if (closing_) return;
    start_writer = push_locked(Outgoing{std::make_shared<const std::string>(std::move(frame)), {}});
  }
  if (start_writer) write_next();  // already on the strand
}

void WebSocketSession::close(websocket::close_code code, std::string_view reason) {
  bool start_writer = false;
  {
    std::lock_guard lock(mutex_);
    if (closing_) return;
    start_writer = push_locked(Outgoing{
        nullptr,
        std::make_unique<websocket::close_reason>(code, std::string(reason).substr(0, 123))});
  }
  if (start_writer) write_next();
}

void WebSocketSession::close_for_shutdown() {
  asio::post(ws_.get_executor(), [self = shared_from_this()] {
    self->close(websocket::close_code::going_away, "server shutting down");
    self->wake_.cancel();  // stop waiting for user lookups
  });
}

bool WebSocketSession::is_closing() {
  std::lock_guard lock(mutex_);
  return closing_;
}

bool WebSocketSession::push_locked(Outgoing item) {
  const bool is_close = item.close != nullptr;
  if (is_close) {
    closing_ = true;
    close_code_ = item.close->code;
  } else {
    queued_bytes_ += item.frame->size();
  }
  queue_.push_back(std::move(item));
  if (writing_) return false;
  writing_ = true;
  return true;
}

void WebSocketSession::write_next() {
  std::shared_ptr<const std::string> frame;
  std::optional<websocket::close_reason> close_reason;
  {
    std::lock_guard lock(mutex_);
    if (queue_.empty()) {
      writing_ = false;
      // A burst may have grown the queue; an idle connection holds none of it.
      if (queue_.capacity() > kKeptQueueCapacity) decltype(queue_)().swap(queue_);
      return;
    }
    frame = queue_.front().frame;
    if (queue_.front().close) close_reason = *queue_.front().close;
  }
  auto self = shared_from_this();
  if (close_reason) {
    bool wake_waiter = false;
    {
      std::lock_guard lock(mutex_);
      wake_waiter = std::exchange(drain_waiter_, 0) != 0;
    }
    if (wake_waiter) wake_.cancel();  // a replay waiting for the queue ends now
    ws_.async_close(*close_reason, [self](const beast::error_code& error) {
      if (error && !is_normal_end(error)) {
        spdlog::debug("session {}: close failed: {}", self->id_, error.message());
      }
      // The read loop ends when the peer answers or the close times out.
    });
    return;
  }
  ws_.text(true);
  ws_.async_write(asio::buffer(*frame), [self](const beast::error_code& error, std::size_t) {
    std::chrono::steady_clock::time_point received_at;
    bool wake_waiter = false;
    {
      std::lock_guard lock(self->mutex_);
      received_at = self->queue_.front().received_at;
      self->queued_bytes_ -= self->queue_.front().frame->size();
      self->queue_.pop_front();
      if (self->drain_waiter_ != 0 && (error || self->queued_bytes_ <= self->drain_waiter_)) {
        self->drain_waiter_ = 0;
        wake_waiter = true;
      }
    }
    if (wake_waiter) self->wake_.cancel();
    if (!error && received_at != std::chrono::steady_clock::time_point{}) {
      auto& metrics = self->services_.metrics;
      metrics.messages_delivered.inc();
      metrics.delivery_seconds.observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - received_at).count());
    }
    if (error) {
      if (!is_normal_end(error)) {
        spdlog::debug("session {}: write failed: {}", self->id_, error.message());
      }
      std::lock_guard lock(self->mutex_);
      self->closing_ = true;
      self->queue_.clear();
      self->queued_bytes_ = 0;
      self->writing_ = false;
      return;
    }
    self->write_next();
  });
}

}  // namespace chatd::net
