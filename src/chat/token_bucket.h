#pragma once

#include <algorithm>
#include <chrono>

namespace chatd::chat {

/// The classic token bucket: `rate` tokens a second, at most `burst` saved.
/// A rate of 0 means unlimited. Not thread-safe: each owner (a session on
/// its strand, a map entry under its lock) has its own.
class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  TokenBucket(double rate, double burst, Clock::time_point now = Clock::now())
      : rate_(rate), burst_(std::max(1.0, burst)), tokens_(burst_), last_(now) {}

  /// Takes one token if there is one.
  bool try_take(Clock::time_point now = Clock::now()) {
    if (rate_ <= 0) return true;
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    if (elapsed > 0) {
      tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
      last_ = now;
    }
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }

 private:
  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace chatd::chat
