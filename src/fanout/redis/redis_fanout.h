#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "chat/hub.h"
#include "fanout/chat_sequencer.h"
#include "fanout/fanout.h"
#include "fanout/redis/redis_connection.h"
#include "fanout/redis/redis_url.h"

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
};

/// Fan-out between chatd instances through Redis Pub/Sub (docs/scaling.md).
///
/// - Every committed message and chat event is delivered to this instance's
///   connections at once and published on the chat's channel,
///   `chatd:chat:<chat key>`.
/// - An instance subscribes to a chat's channel while it has a connection of
///   that chat (the hub's interest listener), and delivers what others publish.
/// - Everything a connection gets passes the ChatSequencer: in seq order, once;
///   a gap is held for `gap_hold`, then filled from the store. After Redis was
///   unreachable, each followed chat is re-read from the store from its last
///   delivered seq, so what other instances committed meanwhile arrives too.
/// - Presence: per chat and user, a Redis hash of instance -> devices with an
///   expiry, refreshed by a heartbeat every third of `presence_ttl`; an
///   instance that dies stops refreshing and its users go offline by themselves.
///
/// hiredis runs on one strand; the commit thread and sessions only post to it.
class RedisFanout final : public Fanout {
 public:
  RedisFanout(boost::asio::io_context& io, chat::Hub& hub, store::Store& store,
              metrics::Registry& registry, RedisFanoutOptions options);
  ~RedisFanout() override;

  /// Connects (and keeps reconnecting); call once the I/O threads run or will.
  void start();
  /// Disconnects; returns once done on the strand. The I/O threads must run.
  void stop();

  void publish(std::span<const chat::MessagePtr> batch) override;
  void publish_event(const chat::ChatKey& chat, chat::ConnectionId origin,
                     std::shared_ptr<const std::string> frame) override;
  void presence_changed(const chat::ChatKey& chat, chat::ConnectionId origin,
                        const std::string& user, std::size_t local_devices) override;
  void devices(const chat::ChatKey& chat, const std::string& user,
               DevicesHandler handler) override;
  std::string_view state() const override;

 private:
  using Strand = RedisConnection::Strand;

  void on_interest(const chat::ChatKey& chat);
  /// A message this instance committed whose commit publish() has not had yet
  /// (the sequencer's stand-ins).
  bool not_yet_announced(const chat::Message& message) const;
  // On the strand:
  void subscribe(const chat::ChatKey& chat);
  void unsubscribe(const chat::ChatKey& chat);
  void on_subscriber_up();
  void on_publisher_up();
  void on_push(std::string_view kind, std::string_view channel, std::string_view data);
  void on_payload(const chat::ChatKey& chat, std::string_view payload);
  void sync_chat(const chat::ChatKey& chat);
  void fill_chat(const chat::ChatKey& chat, std::uint64_t after_seq);
  void recover_all();
  void send_publish(std::string channel, std::string payload);
  /// Runs the presence script: sets this instance's count of `user` in `chat`
  /// (nullopt: only reads) and answers the total over live instances.
  /// A user's connections to a chat on every instance, as Redis answered at
  /// `version` (0: Redis did not answer; this instance's own count).
  struct Presence {
    std::size_t devices = 0;
    std::uint64_t version = 0;
  };
  void presence_script(const chat::ChatKey& chat, const std::string& user,
                       std::optional<std::size_t> local, std::function<void(Presence)> done);
  void presence_done();
  /// Records `presence` unless a newer one is known; `changed`: its count differs.
  bool newer(const chat::ChatKey& chat, const std::string& user, Presence presence,
             bool& changed);
  void announce(const chat::ChatKey& chat, chat::ConnectionId origin, const std::string& user,
                Presence presence, bool publish);
  void schedule_gap_check();
  void schedule_heartbeat();
  void heartbeat();

  static std::string channel_of(const chat::ChatKey& chat);
  static std::string presence_key(const chat::ChatKey& chat, const std::string& user);

  chat::Hub& hub_;
  store::Store& store_;
  RedisFanoutOptions options_;
  std::string instance_;  ///< random per process: tells this instance's own publishes apart
  std::string presence_script_sha_;
  Strand strand_;
  std::shared_ptr<RedisConnection> publisher_;
  std::shared_ptr<RedisConnection> subscriber_;
  ChatSequencer sequencer_;
  std::mutex interest_mutex_;
  /// Id counter of the last message of this instance publish() was given.
  std::atomic<std::uint32_t> announced_counter_{0};  ///< makes each follow/unfollow decision atomic with has_chat()
  boost::asio::steady_timer gap_timer_;
  boost::asio::steady_timer heartbeat_timer_;
  bool publisher_was_down_ = false;
  // Strand only:
  std::unordered_set<std::string> subscribed_;  ///< channels SUBSCRIBEd on this connection
  std::unordered_set<std::string> confirmed_;   ///< and of those, the ones Redis confirmed
  std::unordered_set<std::string> unsubscribing_;  ///< UNSUBSCRIBEd, answer not yet come
  std::unordered_map<std::string, Presence> announced_;  ///< newest presence known, by key
  std::size_t presence_pending_ = 0;                       ///< presence scripts in flight
  std::function<void()> on_presence_idle_;                 ///< stop() waiting for them

  metrics::Counter& published_;
  metrics::Counter& publish_dropped_;
  metrics::Counter& received_;
  metrics::Counter& gap_fills_;
};

}  // namespace chatd::fanout::redis
