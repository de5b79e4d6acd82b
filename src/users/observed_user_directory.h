#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>

#include "users/user_directory.h"

namespace chatd::users {

/// Sits between the cache and the user-search client: times every upstream
/// lookup (for /metrics) and remembers how the service last answered (for
/// /readyz). Adds no I/O of its own.
class ObservedUserDirectory final : public UserDirectory {
 public:
  using Clock = std::chrono::steady_clock;
  using Observer = std::function<void(UserStatus, std::chrono::nanoseconds)>;

  ObservedUserDirectory(UserDirectory& upstream, Observer observer)
      : upstream_(upstream), observer_(std::move(observer)) {}

  /// True unless the service's last answer was "unavailable" and it has not
  /// answered successfully within `grace`. With no lookup yet, true.
  bool healthy(std::chrono::nanoseconds grace) const {
    if (!last_failed_.load(std::memory_order_relaxed)) return true;
    const auto success = last_success_.load(std::memory_order_relaxed);
    return success != 0 && Clock::now().time_since_epoch().count() - success <= grace.count();
  }

  /// Starts one lookup of a probe name when the service looks down, so that
  /// an instance taken out of rotation (no traffic, no lookups) still sees
  /// the service come back. Any answer, "not found" included, shows it is up.
  /// At most one probe runs at a time. Any thread.
  void probe_if_unhealthy(std::chrono::nanoseconds grace) {
    if (healthy(grace) || probing_.exchange(true)) return;
    verify("chatd-readiness-probe", Handler([this](UserStatus) { probing_.store(false); }));
  }

  // UserDirectory
  void verify(std::string username, Handler handler) override {
    const auto started = Clock::now();
    upstream_.verify(
        std::move(username),
        Handler([this, started, handler = std::move(handler)](UserStatus status) mutable {
          record(status, Clock::now() - started);
          std::move(handler)(status);
        }));
  }

 private:
  void record(UserStatus status, std::chrono::nanoseconds took) {
    const bool failed = status == UserStatus::unavailable;
    last_failed_.store(failed, std::memory_order_relaxed);
    if (!failed) {
      last_success_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    }
    if (observer_) observer_(status, took);
  }

  UserDirectory& upstream_;
  Observer observer_;
  std::atomic<bool> last_failed_{false};
  std::atomic<Clock::rep> last_success_{0};
  std::atomic<bool> probing_{false};
};

}  // namespace chatd::users
