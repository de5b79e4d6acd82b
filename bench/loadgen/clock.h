#pragma once

#include <chrono>
#include <cstdint>

namespace chatd::loadgen {

// Every time in the load generator is steady_clock nanoseconds of this
// process, one integer that a message carries to its receiver.

using Clock = std::chrono::steady_clock;

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

inline Clock::time_point time_at(std::int64_t ns) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

/// A flag's seconds as a duration.
inline std::chrono::nanoseconds seconds(double value) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(value));
}

}  // namespace chatd::loadgen
