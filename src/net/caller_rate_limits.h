#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "chat/token_bucket.h"

namespace chatd::net {

/// Messages a second per caller of the REST API (the user it posts as), with
/// the same allowance a WebSocket connection has (MESSAGES_PER_SECOND,
/// MESSAGE_BURST): a script posting over HTTP is held to what a person sends.
///
/// Thread-safe, sharded. At most `max_callers` are remembered; past that, the
/// callers idle longest give way (their buckets would be full anyway).
class CallerRateLimits {
 public:
  using Clock = chat::TokenBucket::Clock;

  CallerRateLimits(double rate, double burst, std::size_t max_callers = 100'000);

  /// Takes one message of `caller`'s allowance; false when it has none left.
  bool try_take(std::string_view caller, Clock::time_point now = Clock::now());

  std::size_t callers() const;

 private:
  struct Entry {
    chat::TokenBucket bucket;
    Clock::time_point last_used;
  };
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, Entry> callers;
  };
  static constexpr std::size_t kShards = 16;

  /// Drops the shard's entries idle long enough to have refilled; the mutex is held.
  void sweep_locked(Shard& shard, Clock::time_point now) const;

  double rate_;
  double burst_;
  std::size_t max_per_shard_;
  std::array<Shard, kShards> shards_;
};

}  // namespace chatd::net
