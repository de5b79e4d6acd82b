#pragma once

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "chat/hub.h"
#include "fanout/chat_sequencer.h"
#include "fanout/fanout.h"
#include "fanout/redis/presence_script.h"
#include "fanout/redis/redis_connection.h"
#include "fanout/redis/wire_format.h"

namespace chatd::fanout::redis {

/// Presence over every instance (docs/scaling.md): each change of a local
/// connection count runs the presence script and tells the chat the total;
/// a heartbeat every third of the TTL refreshes this instance's entries and
/// reads the totals of the chats it follows, so a user whose instance died
/// goes offline by the TTL. When Redis cannot answer (down, or its output
/// full), the count is this instance's own.
///
/// Everything here runs on the fan-out's strand but changed() and devices(),
/// which post to it.
class PresenceTracker {
 public:
  /// Publishes on a chat's channel (the fan-out's, which counts and drops).
  using Publish = std::function<void(std::string channel, std::string payload)>;

  PresenceTracker(RedisConnection::Strand strand, chat::Hub& hub, const ChatSequencer& sequencer,
                  RedisConnection& publisher, std::string instance, std::chrono::seconds ttl,
                  Publish publish);

  /// Starts the heartbeat; stop() ends it and calls `idle` once no script is
  /// in flight (the closing sessions' changes reach Redis first).
  void start();
  void stop(std::function<void()> idle);

  /// Fanout::presence_changed and Fanout::devices; any thread.
  void changed(const chat::ChatKey& chat, chat::ConnectionId origin, const std::string& user);
  void devices(const chat::ChatKey& chat, const std::string& user, Fanout::DevicesHandler handler);

  /// A total another instance published.
  void published(const chat::ChatKey& chat, const std::string& user, Presence presence);
  /// This instance no longer follows `chat`: its totals are forgotten.
  void forget(const chat::ChatKey& chat);
  /// Refreshes this instance's entries and reads every followed total;
  /// `tell_others`: also publishes each (their publishes were dropped).
  void heartbeat(bool tell_others = false);
  /// A restarted Redis starts its versions over: every known one is void.
  void forget_versions();

 private:
  /// Runs the script; `done` gets Redis's total, or this instance's own count.
  void run(const chat::ChatKey& chat, const std::string& user, std::optional<std::size_t> local,
           std::function<void(Presence)> done);
  /// Records `presence` unless a newer one is known; `changed`: its count differs.
  bool newer(const chat::ChatKey& chat, const std::string& user, Presence presence, bool& changed);
  void announce(const chat::ChatKey& chat, chat::ConnectionId origin, const std::string& user,
                Presence presence, bool publish);
  void schedule_heartbeat();

  RedisConnection::Strand strand_;
  chat::Hub& hub_;
  const ChatSequencer& sequencer_;
  RedisConnection& publisher_;
  std::string instance_;
  std::chrono::seconds ttl_;
  Publish publish_;
  PresenceScript script_;
  boost::asio::steady_timer heartbeat_timer_;
  std::unordered_map<std::string, Presence> announced_;  ///< newest known, by presence key
  std::size_t in_flight_ = 0;                            ///< scripts not answered yet
  std::function<void()> on_idle_;                        ///< stop() waiting for them
};

}  // namespace chatd::fanout::redis
