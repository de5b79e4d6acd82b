#include "fanout/redis/redis_connection.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <random>
#include <utility>

namespace chatd::fanout::redis {
namespace asio = boost::asio;

namespace {

constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};
constexpr std::chrono::seconds kConnectTimeout{5};

std::size_t decimal_digits(std::size_t n) {
  std::size_t digits = 1;
  for (; n >= 10; n /= 10) ++digits;
  return digits;
}

}  // namespace

/// A command's reply handler, and what it counts in the pending bytes until
/// its answer (or its loss) comes. `owner` is null for the handshake's PING.
/// The owner outlives it: it owns the hiredis context, whose freeing calls
/// every handler still waiting.
struct RedisConnection::Pending {
  RedisConnection* owner = nullptr;
  std::size_t bytes = 0;
  ReplyHandler handler;
};

RedisConnection::RedisConnection(Strand strand, RedisEndpoint endpoint, std::string name,
                                 std::size_t max_pending_bytes)
    : strand_(std::move(strand)),
      endpoint_(std::move(endpoint)),
      name_(std::move(name)),
      resolver_(strand_),
      retry_timer_(strand_),
      connect_timer_(strand_),
      max_pending_bytes_(max_pending_bytes) {}

RedisConnection::~RedisConnection() {
  if (context_ != nullptr) redisAsyncFree(context_);
}

void RedisConnection::start() {
  running_ = true;
  connect();
}

void RedisConnection::stop() {
  running_ = false;
  retry_timer_.cancel();
  connect_timer_.cancel();
  resolver_.cancel();
  if (context_ != nullptr) {
    redisAsyncContext* context = context_;
    context_ = nullptr;
    redisAsyncFree(context);  // pending callbacks are told the connection is gone
  }
}

void RedisConnection::shutdown(std::function<void()> done) {
  if (context_ == nullptr || !connected_) {
    stop();
    done();
    return;
  }
  running_ = false;
  retry_timer_.cancel();
  on_shut_down_ = std::move(done);
  redisAsyncDisconnect(context_);  // after every pending reply; then cleanup
}

void RedisConnection::connect() {
  resolver_.async_resolve(
      endpoint_.host, std::to_string(endpoint_.port),
      asio::bind_executor(strand_, [self = shared_from_this()](
                                       const boost::system::error_code& error,
                                       const asio::ip::tcp::resolver::results_type& results) {
        if (!self->running_) return;
        if (error || results.empty()) {
          self->last_error_ = "cannot resolve " + self->endpoint_.host + ": " + error.message();
          self->retry_later();
          return;
        }
        self->on_resolved(results.begin()->endpoint());
      }));
}

void RedisConnection::on_resolved(const asio::ip::tcp::endpoint& address) {
  // A numeric address: hiredis's own name lookup would block this thread.
  const std::string ip = address.address().to_string();
  redisAsyncContext* context = redisAsyncConnect(ip.c_str(), address.port());
  if (context == nullptr || context->err != 0) {
    last_error_ = context != nullptr ? context->errstr : "out of memory";
    if (context != nullptr) redisAsyncFree(context);
    retry_later();
    return;
  }
  // TCP keepalive: a Redis that vanished without a FIN (a crashed host, a
  // dropped NAT entry) is noticed within about a minute instead of never.
  redisEnableKeepAlive(&context->c);
  context_ = context;
  watcher_ = HiredisAsio::attach(strand_, *context,
                                 [weak = weak_from_this()](const redisAsyncContext& freed) {
                                   if (auto self = weak.lock()) self->context_freed(freed);
                                 });

  connect_timer_.expires_after(kConnectTimeout);
  connect_timer_.async_wait([self = shared_from_this(), context](boost::system::error_code error) {
    if (error || self->connected_ || self->context_ != context) return;
    self->last_error_ = "no answer within 5 s";
    self->stop_context();
  });
  handshake();
}

void RedisConnection::context_freed(const redisAsyncContext& context) {
  if (context.errstr != nullptr && context.err != 0) last_error_ = context.errstr;
  context_ = nullptr;
  connected_ = false;
  // The commands' handlers were called (with nullopt) before this hook;
  // subscriptions answer by pushes, which will not come now.
  pending_bytes_ -= std::min(subscription_bytes_, pending_bytes_.load());
  subscription_bytes_ = 0;
  full_ = false;
  asio::post(strand_, [self = shared_from_this()] { self->context_gone(); });
}

void RedisConnection::stop_context() {
  if (context_ == nullptr) return;
  redisAsyncContext* context = context_;
  context_ = nullptr;
  redisAsyncFree(context);
}

void RedisConnection::handshake() {
  // Pipelined: AUTH, SELECT, then a PING whose answer says the connection is
  // usable (hiredis only completes a connect once it has something to write).
  if (!endpoint_.password.empty()) {
    if (endpoint_.user.empty()) {
      send({"AUTH", endpoint_.password}, nullptr, nullptr);
    } else {
      send({"AUTH", endpoint_.user, endpoint_.password}, nullptr, nullptr);
    }
  }
  if (endpoint_.db != 0) send({"SELECT", std::to_string(endpoint_.db)}, nullptr, nullptr);
  auto* handshake =
      new Pending{nullptr, 0, [self = shared_from_this()](std::optional<RedisReply> reply) {
                    if (!reply) return;  // lost: the cleanup hook retries
                    if (reply->is_error()) {
                      spdlog::error("redis {}: {}:{} refused the connection: {}", self->name_,
                                    self->endpoint_.host, self->endpoint_.port, reply->str);
                      self->last_error_ = reply->str;
                      if (self->context_ != nullptr) redisAsyncDisconnect(self->context_);
                      return;
                    }
                    self->connect_timer_.cancel();
                    self->connected_ = true;
                    self->was_up_ = true;
                    self->failures_ = 0;
                    self->backoff_ = kFirstBackoff;
                    spdlog::info("redis {}: connected to {}:{}", self->name_, self->endpoint_.host,
                                 self->endpoint_.port);
                    if (self->on_up_) self->on_up_();
                  }};
  if (!send({"PING"}, &RedisConnection::on_reply, handshake)) delete handshake;
}

void RedisConnection::context_gone() {
  watcher_.reset();
  connect_timer_.cancel();
  if (on_shut_down_) {
    was_up_ = false;
    std::exchange(on_shut_down_, {})();
    return;
  }
  if (was_up_) {
    if (running_) {
      spdlog::warn("redis {}: connection to {}:{} lost{}{}", name_, endpoint_.host, endpoint_.port,
                   last_error_.empty() ? "" : ": ", last_error_);
    } else {
      spdlog::debug("redis {}: disconnected", name_);  // stop(): on purpose
    }
    was_up_ = false;
    if (on_down_) on_down_();
  }
  if (running_) retry_later();
}

void RedisConnection::retry_later() {
  if (!running_) return;
  if (failures_++ == 0) {
    spdlog::warn("redis {}: cannot connect to {}:{}: {}; retrying with backoff", name_,
                 endpoint_.host, endpoint_.port, last_error_);
  } else {
    spdlog::debug("redis {}: connect attempt {} failed: {}", name_, failures_, last_error_);
  }
  last_error_.clear();
  static thread_local std::minstd_rand random{std::random_device{}()};
  std::uniform_int_distribution<long> jitter(backoff_.count() / 2, backoff_.count());
  retry_timer_.expires_after(std::chrono::milliseconds(jitter(random)));
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  retry_timer_.async_wait([self = shared_from_this()](boost::system::error_code error) {
    if (!error && self->running_) self->connect();
  });
}

bool RedisConnection::send(const std::vector<std::string>& args,
                           void (*callback)(redisAsyncContext*, void*, void*), void* privdata) {
  if (context_ == nullptr) return false;
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const auto& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  return redisAsyncCommandArgv(context_, callback, privdata, static_cast<int>(argv.size()),
                               argv.data(), lengths.data()) == REDIS_OK;
}

// ---------------------------------------------------------------------------
// Commands, and the bound on what waits for an answer
// ---------------------------------------------------------------------------

std::size_t RedisConnection::command_bytes(const std::vector<std::string>& args) {
  std::size_t bytes = 1 + decimal_digits(args.size()) + 2;  // *<count>\r\n
  for (const auto& arg : args) {
    bytes += 1 + decimal_digits(arg.size()) + 2 + arg.size() + 2;  // $<length>\r\n<arg>\r\n
  }
  return bytes;
}

bool RedisConnection::has_room(std::size_t bytes) {
  if (full_) return false;
  const std::size_t pending = pending_bytes_.load();
  if (pending == 0 || pending + bytes <= max_pending_bytes_) return true;
  full_ = true;
  spdlog::warn(
      "redis {}: {} bytes of commands wait for {}:{}, past REDIS_MAX_PENDING_BYTES ({}); "
      "refusing commands until half of them are answered",
      name_, pending, endpoint_.host, endpoint_.port, max_pending_bytes_);
  return false;
}

void RedisConnection::answered(std::size_t bytes, bool with_reply) {
  pending_bytes_ -= std::min(bytes, pending_bytes_.load());
  // Only a real answer drains: when the context is freed every handler is told
  // of the loss, and on_down (not on_drained) follows.
  if (!full_ || !with_reply || pending_bytes_.load() > max_pending_bytes_ / 2) return;
  full_ = false;
  spdlog::info("redis {}: {}:{} takes commands again", name_, endpoint_.host, endpoint_.port);
  asio::post(strand_, [self = shared_from_this()] {
    if (self->connected_ && self->on_drained_) self->on_drained_();
  });
}

RedisConnection::Sent RedisConnection::command(const std::vector<std::string>& args,
                                               ReplyHandler handler) {
  if (!connected_) return Sent::not_connected;
  const std::size_t bytes = command_bytes(args);
  if (!has_room(bytes)) return Sent::full;
  // Every command gets a reply callback, with or without a handler: its answer
  // is what takes its bytes off the pending count.
  auto* pending = new Pending{this, bytes, std::move(handler)};
  if (!send(args, &RedisConnection::on_reply, pending)) {
    delete pending;
    return Sent::not_connected;
  }
  pending_bytes_ += bytes;
  return Sent::queued;
}

bool RedisConnection::subscription(const char* verb, const std::string& channel) {
  if (!connected_) return false;
  const std::vector<std::string> args{verb, channel};
  const std::size_t bytes = command_bytes(args);
  const std::size_t pending = pending_bytes_.load();
  if (pending != 0 && pending + bytes > max_pending_bytes_) {
    // A subscription cannot be dropped: this connection starts over instead,
    // and its owner subscribes again to what it follows then (on_up).
    spdlog::warn(
        "redis {}: {} bytes of subscriptions wait for {}:{}, past "
        "REDIS_MAX_PENDING_BYTES ({}); reconnecting",
        name_, pending, endpoint_.host, endpoint_.port, max_pending_bytes_);
    last_error_ = "output past REDIS_MAX_PENDING_BYTES";
    stop_context();
    return false;
  }
  if (!send(args, &RedisConnection::on_push_reply, this)) return false;
  pending_bytes_ += bytes;
  subscription_bytes_ += bytes;
  return true;
}

bool RedisConnection::subscribe(const std::string& channel) {
  return subscription("SUBSCRIBE", channel);
}

bool RedisConnection::unsubscribe(const std::string& channel) {
  return subscription("UNSUBSCRIBE", channel);
}

void RedisConnection::on_reply(redisAsyncContext*, void* reply, void* privdata) {
  std::unique_ptr<Pending> pending(static_cast<Pending*>(privdata));
  if (pending->owner != nullptr) pending->owner->answered(pending->bytes, reply != nullptr);
  if (!pending->handler) return;
  if (reply == nullptr) {
    pending->handler(std::nullopt);
  } else {
    pending->handler(RedisReply::from(*static_cast<redisReply*>(reply)));
  }
}

void RedisConnection::on_push_reply(redisAsyncContext*, void* reply, void* privdata) {
  if (reply == nullptr) return;  // the connection is going; on_down says so
  auto* self = static_cast<RedisConnection*>(privdata);
  const auto& r = *static_cast<redisReply*>(reply);
  if (r.type != REDIS_REPLY_ARRAY || r.elements < 3 || !self->on_push_) return;
  const auto text = [](const redisReply* element) -> std::string {
    if (element->type == REDIS_REPLY_INTEGER) return std::to_string(element->integer);
    if (element->str == nullptr) return {};
    return std::string(element->str, element->len);
  };
  const std::string kind = text(r.element[0]);
  const std::string channel = text(r.element[1]);
  if (kind == "subscribe" || kind == "unsubscribe") {
    // The answer of one SUBSCRIBE / UNSUBSCRIBE (the same length either case).
    const std::size_t bytes = std::min(command_bytes({kind, channel}), self->subscription_bytes_);
    self->subscription_bytes_ -= bytes;
    self->pending_bytes_ -= std::min(bytes, self->pending_bytes_.load());
  }
  self->on_push_(kind, channel, text(r.element[2]));
}

}  // namespace chatd::fanout::redis
