#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "chat/hub.h"
#include "fanout/chat_sequencer.h"
#include "fanout/fanout.h"
#include "fanout/redis/presence_tracker.h"
#include "fanout/redis/redis_connection.h"
#include "fanout/redis/redis_url.h"
#include "fanout/redis/stand_in_counter.h"
#include "fanout/redis/store_catch_up.h"
#include "fanout/redis/subscriptions.h"

namespace chatd::metrics {
class Registry;
class Counter;
}  // namespace chatd::metrics
namespace chatd::store {
class Store;
}

namespace chatd::fanout::redis {

struct RedisFanoutOptions {
  RedisEndpoint endpoint;
  /// How long a missing seq is waited for before it is read from the store.
  std::chrono::milliseconds gap_hold{200};
  /// Life of an instance's presence entries in Redis without a heartbeat.
  std::chrono::seconds presence_ttl{30};
  /// Newest messages read as the baseline of a chat this instance starts
  /// following, and delivered (connections drop those their history had): they
  /// cover what a new connection's history read and the subscription could
  /// let pass between them, a few milliseconds. Few, so that a connection's
  /// replay buffer takes them easily (32 × 16 KiB texts = 512 KiB).
  std::size_t sync_messages = 32;
  /// Bytes of commands one Redis connection may have unanswered
  /// (REDIS_MAX_PENDING_BYTES); past it publishes are dropped (the store has
  /// them). 8 MiB: several seconds of a busy instance's publishes, or 500 of
  /// the largest messages, which a Redis that answers at all takes in well
  /// under a second.
  std::size_t max_pending_bytes = 8 * 1024 * 1024;
  /// How old the entries after a hole in a chat's stored order must be before
  /// the hole is sealed with fillers (MONGO_SEAL_SECONDS): longer than any
  /// write can take (the driver's socket timeout, and its one retry).
  std::chrono::milliseconds seal_after{60'000};
};

/// Fan-out between chatd instances through Redis Pub/Sub (docs/scaling.md).
///
/// - Every committed message and chat event is delivered to this instance's
///   connections at once and published on the chat's channel (wire_format.h).
/// - An instance subscribes to a chat's channel while it has a connection of
///   that chat (the hub's interest listener; subscriptions.h), and delivers
///   what others publish.
/// - Everything a connection gets passes the ChatSequencer: in seq order, once;
///   a gap is held for `gap_hold`, then filled from the store (store_catch_up.h).
///   After Redis was unreachable, or this instance's output was full and
///   publishes were dropped, the chats are re-read from the store from their
///   last delivered seq, so what was committed meanwhile arrives too.
/// - Presence: presence_tracker.h and presence_script.h.
///
/// hiredis runs on one strand; the commit thread and sessions only post to it.
class RedisFanout final : public Fanout {
 public:
  RedisFanout(boost::asio::io_context& io, chat::Hub& hub, store::Store& store,
              metrics::Registry& registry, RedisFanoutOptions options);
  ~RedisFanout() override;

  // Fanout
  void start() override;
  void stop() override;
  void publish(std::span<const chat::MessagePtr> batch) override;
  void publish_event(const chat::ChatKey& chat, chat::ConnectionId origin,
                     std::shared_ptr<const std::string> frame) override;
  void presence_changed(const chat::ChatKey& chat, chat::ConnectionId origin,
                        const std::string& user, std::size_t local_devices) override;
  void devices(const chat::ChatKey& chat, const std::string& user, DevicesHandler handler) override;
  std::string_view state() const override;

 private:
  /// What a publish carries, for the drop counter.
  enum class Kind { message, event, presence };

  void on_interest(const chat::ChatKey& chat);
  // On the strand:
  void on_publisher_up();
  void on_publisher_drained();
  void on_push(std::string_view kind, std::string_view channel, std::string_view data);
  void on_payload(const chat::ChatKey& chat, std::string_view payload);
  void send_publish(Kind kind, std::string channel, std::string payload);

  chat::Hub& hub_;
  RedisFanoutOptions options_;
  std::string instance_;  ///< random per process: tells this instance's own publishes apart
  RedisConnection::Strand strand_;
  std::shared_ptr<RedisConnection> publisher_;
  std::shared_ptr<RedisConnection> subscriber_;
  StandInCounter stand_ins_;
  ChatSequencer sequencer_;
  /// Makes each follow/unfollow decision atomic with has_chat().
  std::mutex interest_mutex_;

  metrics::Counter& published_;
  metrics::Counter& dropped_unreachable_;
  metrics::Counter& dropped_full_messages_;
  metrics::Counter& dropped_full_events_;
  metrics::Counter& dropped_full_presence_;
  metrics::Counter& received_;
  metrics::Counter& gap_fills_;
  metrics::Counter& sealed_;

  // Strand only:
  StoreCatchUp catch_up_;
  Subscriptions subscriptions_;
  PresenceTracker presence_;
  /// Some publishes did not go out (the publisher was down, or full): the
  /// others are told to re-read from the store once they go out again.
  bool publishes_lost_ = false;
};

}  // namespace chatd::fanout::redis
