#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "fanout/redis/redis_connection.h"
#include "fanout/redis/wire_format.h"

namespace chatd::fanout::redis {

/// The Lua script that keeps presence in Redis (docs/scaling.md): per chat and
/// user, a hash of instance -> "devices:expires_ms", and "~v" -> the version
/// of its last answer. One call sets this instance's count (or only reads),
/// drops expired entries and answers {devices over every live instance,
/// version}, atomically and in one round trip.
class PresenceScript {
 public:
  /// Redis's answer; nullopt when there was none (not sent, connection lost,
  /// an error).
  using Done = std::function<void(std::optional<Presence>)>;

  PresenceScript(std::string instance, std::chrono::milliseconds ttl);

  /// Runs the script for `key` (presence_key()) on `connection`: sets this
  /// instance's count to `local` (nullopt: only reads). `done` is called once,
  /// on the strand; at once with nullopt when the command could not be sent.
  void run(RedisConnection& connection, const std::string& key, std::optional<std::size_t> local,
           Done done) const;

  /// The answer in `reply`, when it is one.
  static std::optional<Presence> answer(const RedisReply& reply);
  /// The script's text and its SHA-1, by which it is called.
  static const char* text();
  const std::string& sha() const { return sha_; }

 private:
  std::string instance_;
  std::chrono::milliseconds ttl_;
  std::string sha_;
};

}  // namespace chatd::fanout::redis
