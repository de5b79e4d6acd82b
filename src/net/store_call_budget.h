#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <mutex>
#include <vector>

namespace chatd::net {

/// The store calls all connections together may have waiting
/// (MAX_STORE_CALLS). Each connection already stops reading at its own
/// bound (MAX_STORE_CALLS_PER_CONNECTION); this one holds when many
/// connections each stay under theirs, so that a slow store slows the
/// senders down (TCP backpressure) instead of filling the store's queue until
/// it answers `overloaded`.
///
/// A connection takes one unit per call and gives it back with the answer.
/// One that finds the budget spent stops reading and waits: it is woken,
/// on its own executor, once the calls in flight are back under the bound.
/// Thread-safe.
class StoreCallBudget {
 public:
  explicit StoreCallBudget(std::size_t limit) : limit_(limit) {}

  void take() { in_flight_.fetch_add(1); }
  /// Gives one back, and wakes the waiters once under the bound.
  void give_back();
  bool spent() const { return in_flight_.load() >= limit_; }
  std::size_t in_flight() const { return in_flight_.load(); }
  /// Calls `wake` once there is room again (at once when there is already).
  /// It must post to its connection's executor and not block.
  void wait(std::function<void()> wake);
  /// Connections waiting now.
  std::size_t waiting() const;

 private:
  void wake_all();

  const std::size_t limit_;
  std::atomic<std::size_t> in_flight_{0};
  mutable std::mutex mutex_;
  std::vector<std::function<void()>> waiters_;
  std::atomic<bool> any_waiting_{false};
};

}  // namespace chatd::net
