#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fanout/redis/hiredis_asio.h"
#include "fanout/redis/redis_reply.h"
#include "fanout/redis/redis_url.h"

struct redisAsyncContext;

namespace chatd::fanout::redis {

/// One hiredis asynchronous connection, driven by Asio on a strand
/// (hiredis_asio.h): no thread ever blocks on Redis.
///
/// It connects by itself and reconnects after any loss, with exponential
/// backoff (100 ms doubling to 5 s, with jitter), for as long as it runs.
/// Every public function must be called on the strand.
///
/// Its output is bounded (REDIS_MAX_PENDING_BYTES): it counts the bytes of the
/// commands it has handed to hiredis whose answer has not come, which is at
/// least what hiredis still holds to write. A Redis that stops reading (stalled,
/// paused) or stops answering (CLIENT PAUSE reads on but answers nothing) makes
/// that count grow. Past the bound it is full: command() refuses everything
/// until the count is down to half the bound, then calls on_drained. A command
/// is taken whenever nothing is pending, so one larger than the bound still
/// goes out: what it holds is at most the bound plus one command.
/// SUBSCRIBE and UNSUBSCRIBE cannot be refused (the subscriptions would be
/// wrong): past the bound the connection is closed and made again, and the
/// owner subscribes again to what it needs (on_up).
class RedisConnection : public std::enable_shared_from_this<RedisConnection> {
 public:
  using Strand = boost::asio::strand<boost::asio::any_io_executor>;
  /// What command() did with a command.
  enum class Sent {
    queued,         ///< handed to hiredis; its answer will come (or nullopt)
    not_connected,  ///< not sent
    full,           ///< not sent: the pending bytes are past the bound
  };
  /// One answer; nullopt when the connection was lost before it came.
  using ReplyHandler = std::function<void(std::optional<RedisReply>)>;
  /// A subscriber connection's pushes: kind is "message", "subscribe" or
  /// "unsubscribe"; channel; payload (the message, or the subscription count).
  using PushHandler =
      std::function<void(std::string_view kind, std::string_view channel, std::string_view data)>;

  RedisConnection(Strand strand, RedisEndpoint endpoint, std::string name,
                  std::size_t max_pending_bytes);
  ~RedisConnection();

  /// Called on the strand when the connection is up (AUTH and SELECT done),
  /// and when it is lost.
  void on_up(std::function<void()> handler) { on_up_ = std::move(handler); }
  void on_down(std::function<void()> handler) { on_down_ = std::move(handler); }
  /// Makes this a subscriber connection: pushes go to `handler`.
  void on_push(PushHandler handler) { on_push_ = std::move(handler); }
  /// Called on the strand when a full connection has drained to half the bound.
  void on_drained(std::function<void()> handler) { on_drained_ = std::move(handler); }

  void start();
  /// Disconnects at once; replies not yet come are lost.
  void stop();
  /// Stops reconnecting, sends what is queued, waits for its replies, then
  /// disconnects and calls `done` (at once when not connected).
  void shutdown(std::function<void()> done);
  bool connected() const { return connected_; }
  /// Bytes of commands sent whose answer has not come (any thread, for metrics).
  std::size_t pending_bytes() const { return pending_bytes_.load(); }
  bool full() const { return full_; }

  /// Sends a command (pipelined with the others). Unless it is queued,
  /// `handler` is not called.
  Sent command(const std::vector<std::string>& args, ReplyHandler handler = {});
  /// SUBSCRIBE / UNSUBSCRIBE on a subscriber connection; answers come as pushes.
  /// False when not connected, or when past the bound (the connection is then
  /// closed: on_down, and on_up once it is back).
  bool subscribe(const std::string& channel);
  bool unsubscribe(const std::string& channel);

  /// The bytes of `args` as a Redis command (RESP), as hiredis writes them.
  static std::size_t command_bytes(const std::vector<std::string>& args);

 private:
  struct Pending;

  void connect();
  void on_resolved(const boost::asio::ip::tcp::endpoint& address);
  void handshake();
  /// hiredis freed the context (on purpose or after an error).
  void context_freed(const redisAsyncContext& context);
  void context_gone();
  void stop_context();
  void retry_later();
  bool send(const std::vector<std::string>& args,
            void (*callback)(redisAsyncContext*, void*, void*), void* privdata);
  static void on_reply(redisAsyncContext* context, void* reply, void* privdata);
  static void on_push_reply(redisAsyncContext* context, void* reply, void* privdata);
  /// Whether a command of `bytes` fits; marks the connection full if not.
  bool has_room(std::size_t bytes);
  void answered(std::size_t bytes, bool with_reply);
  bool subscription(const char* verb, const std::string& channel);

  Strand strand_;
  RedisEndpoint endpoint_;
  std::string name_;
  boost::asio::ip::tcp::resolver resolver_;
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer connect_timer_;
  std::chrono::milliseconds backoff_{100};
  redisAsyncContext* context_ = nullptr;
  std::shared_ptr<HiredisAsio> watcher_;
  bool running_ = false;
  std::atomic<bool> connected_{false};  // read by metrics from any thread
  bool was_up_ = false;                 // on_up was called; on_down is owed
  unsigned failures_ = 0;               // connect attempts failed in a row
  std::string last_error_;
  std::size_t max_pending_bytes_;
  /// Counted by every queued command until its answer (or its loss) comes.
  std::atomic<std::size_t> pending_bytes_{0};
  /// Of those, SUBSCRIBE / UNSUBSCRIBE: answered by pushes, dropped with the context.
  std::size_t subscription_bytes_ = 0;
  bool full_ = false;
  std::function<void()> on_drained_;
  std::function<void()> on_up_;
  std::function<void()> on_shut_down_;
  std::function<void()> on_down_;
  PushHandler on_push_;
};

}  // namespace chatd::fanout::redis
