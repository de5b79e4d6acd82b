#include "net/caller_rate_limits.h"

#include <algorithm>
#include <functional>

namespace chatd::net {

CallerRateLimits::CallerRateLimits(double rate, double burst, std::size_t max_callers)
    : rate_(rate), burst_(burst), max_per_shard_(std::max<std::size_t>(1, max_callers / kShards)) {}

void CallerRateLimits::sweep_locked(Shard& shard, Clock::time_point now) const {
  // An entry idle for burst / rate seconds has its bucket full again: the same
  // as a new one, so forgetting it changes nothing.
  const auto refill = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(std::max(1.0, burst_) / rate_));
  std::erase_if(shard.callers,
                [&](const auto& item) { return now - item.second.last_used >= refill; });
  if (shard.callers.size() < max_per_shard_) return;
  // Still full: the one idle longest goes (it is given a fresh bucket if it returns).
  const auto oldest = std::min_element(
      shard.callers.begin(), shard.callers.end(),
      [](const auto& a, const auto& b) { return a.second.last_used < b.second.last_used; });
  shard.callers.erase(oldest);
}

bool CallerRateLimits::try_take(std::string_view caller, Clock::time_point now) {
  if (rate_ <= 0) return true;
  Shard& shard = shards_[std::hash<std::string_view>{}(caller) % kShards];
  std::lock_guard lock(shard.mutex);
  auto found = shard.callers.find(std::string(caller));
  if (found == shard.callers.end()) {
    if (shard.callers.size() >= max_per_shard_) sweep_locked(shard, now);
    found = shard.callers
                .emplace(std::string(caller), Entry{chat::TokenBucket(rate_, burst_, now), now})
                .first;
  }
  found->second.last_used = now;
  return found->second.bucket.try_take(now);
}

std::size_t CallerRateLimits::callers() const {
  std::size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    total += shard.callers.size();
  }
  return total;
}

}  // namespace chatd::net
