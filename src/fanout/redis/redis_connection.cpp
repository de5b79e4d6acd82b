#include "fanout/redis/redis_connection.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <random>
#include <utility>

namespace chatd::fanout::redis {
namespace asio = boost::asio;

namespace {

constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};
constexpr std::chrono::seconds kConnectTimeout{5};

}  // namespace

RedisReply RedisReply::from(const redisReply& reply) {
  RedisReply r;
  switch (reply.type) {
    case REDIS_REPLY_INTEGER:
      r.type = Type::integer;
      r.integer = reply.integer;
      break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      r.type = reply.type == REDIS_REPLY_STRING   ? Type::string
               : reply.type == REDIS_REPLY_STATUS ? Type::status
                                                  : Type::error;
      r.str.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_ARRAY:
      r.type = Type::array;
      r.elements.reserve(reply.elements);
      for (std::size_t i = 0; i < reply.elements; ++i)
        r.elements.push_back(from(*reply.element[i]));
      break;
    default:
      break;
  }
  return r;
}

/// The socket of one hiredis context, watched through Asio. hiredis says when
/// it wants to read or write (its ev hooks); a readiness wait on the strand
/// calls it back. Lives until hiredis's cleanup hook and the last wait are done.
struct RedisConnection::Watcher : std::enable_shared_from_this<Watcher> {
  Watcher(Strand strand, int fd) : descriptor(strand, fd) {}

  redisAsyncContext* context = nullptr;
  asio::posix::stream_descriptor descriptor;
  std::weak_ptr<RedisConnection> owner;
  /// One direction of the socket: hiredis wants it (its add/del hooks), and
  /// whether a readiness wait for it is pending.
  struct Direction {
    asio::posix::descriptor_base::wait_type wait;
    void (*handle)(redisAsyncContext*);
    bool wanted = false;
    bool waiting = false;
  };
  Direction read{asio::posix::descriptor_base::wait_read, &redisAsyncHandleRead};
  Direction write{asio::posix::descriptor_base::wait_write, &redisAsyncHandleWrite};

  void arm(Direction Watcher::*which) {
    Direction& direction = this->*which;
    if (direction.waiting || context == nullptr) return;
    direction.waiting = true;
    descriptor.async_wait(
        direction.wait, [self = shared_from_this(), which](const boost::system::error_code& error) {
          Direction& d = self.get()->*which;
          d.waiting = false;
          if (error || self->context == nullptr || !d.wanted) return;
          d.handle(self->context);  // may end the context
          if (self->context != nullptr && d.wanted) self->arm(which);
        });
  }

  static Watcher& of(void* data) { return *static_cast<Watcher*>(data); }
  static void add_read(void* data) {
    of(data).read.wanted = true;
    of(data).arm(&Watcher::read);
  }
  static void del_read(void* data) { of(data).read.wanted = false; }
  static void add_write(void* data) {
    of(data).write.wanted = true;
    of(data).arm(&Watcher::write);
  }
  static void del_write(void* data) { of(data).write.wanted = false; }
  /// hiredis is freeing the context (and will close the socket itself).
  static void cleanup(void* data) {
    Watcher& w = of(data);
    if (auto owner = w.owner.lock()) {
      if (w.context != nullptr && w.context->errstr != nullptr && w.context->err != 0) {
        owner->last_error_ = w.context->errstr;
      }
      owner->context_ = nullptr;
      owner->connected_ = false;
      asio::post(owner->strand_, [owner] { owner->context_gone(); });
    }
    w.context = nullptr;
    w.read.wanted = w.write.wanted = false;
    boost::system::error_code ignored;
    w.descriptor.cancel(ignored);
    w.descriptor.release();  // hiredis closes the descriptor
  }
};

RedisConnection::RedisConnection(Strand strand, RedisEndpoint endpoint, std::string name)
    : strand_(std::move(strand)),
      endpoint_(std::move(endpoint)),
      name_(std::move(name)),
      resolver_(strand_),
      retry_timer_(strand_),
      connect_timer_(strand_) {}

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
  watcher_ = std::make_shared<Watcher>(strand_, context->c.fd);
  watcher_->context = context;
  watcher_->owner = weak_from_this();
  context->ev.data = watcher_.get();
  context->ev.addRead = &Watcher::add_read;
  context->ev.delRead = &Watcher::del_read;
  context->ev.addWrite = &Watcher::add_write;
  context->ev.delWrite = &Watcher::del_write;
  context->ev.cleanup = &Watcher::cleanup;

  connect_timer_.expires_after(kConnectTimeout);
  connect_timer_.async_wait([self = shared_from_this(), context](boost::system::error_code error) {
    if (error || self->connected_ || self->context_ != context) return;
    self->last_error_ = "no answer within 5 s";
    self->stop_context();
  });
  handshake();
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
  auto* handler = new ReplyHandler([self = shared_from_this()](std::optional<RedisReply> reply) {
    if (!reply) return;  // lost: the cleanup hook retries
    if (reply->is_error()) {
      spdlog::error("redis {}: {}:{} refused the connection: {}", self->name_, self->endpoint_.host,
                    self->endpoint_.port, reply->str);
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
  });
  if (!send({"PING"}, &RedisConnection::on_reply, handler)) delete handler;
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

RedisConnection::Sent RedisConnection::command(const std::vector<std::string>& args,
                                               ReplyHandler handler) {
  if (!connected_) return Sent::not_connected;
  if (!handler) return send(args, nullptr, nullptr) ? Sent::queued : Sent::not_connected;
  auto* owned = new ReplyHandler(std::move(handler));
  if (send(args, &RedisConnection::on_reply, owned)) return Sent::queued;
  delete owned;
  return Sent::not_connected;
}

bool RedisConnection::subscribe(const std::string& channel) {
  return connected_ && send({"SUBSCRIBE", channel}, &RedisConnection::on_push_reply, this);
}

bool RedisConnection::unsubscribe(const std::string& channel) {
  return connected_ && send({"UNSUBSCRIBE", channel}, &RedisConnection::on_push_reply, this);
}

void RedisConnection::on_reply(redisAsyncContext*, void* reply, void* privdata) {
  std::unique_ptr<ReplyHandler> handler(static_cast<ReplyHandler*>(privdata));
  if (!*handler) return;
  if (reply == nullptr) {
    (*handler)(std::nullopt);
  } else {
    (*handler)(RedisReply::from(*static_cast<redisReply*>(reply)));
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
  self->on_push_(text(r.element[0]), text(r.element[1]), text(r.element[2]));
}

}  // namespace chatd::fanout::redis
