#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "users/user_directory.h"

namespace chatd::users {

/// Limits of the user cache; each default with its reason.
struct UserCacheOptions {
  /// Users are rarely deleted; 5 minutes spares the service one lookup per reconnect.
  std::chrono::milliseconds positive_ttl{300000};
  /// Short, so that a user who has just signed up can chat within half a minute.
  std::chrono::milliseconds negative_ttl{30000};
  /// About 10 MB at most; bounds memory against clients cycling through random names.
  std::size_t max_entries = 100000;
};

/// A snapshot of the cache's counters, for /metrics.
struct UserCacheStats {
  std::uint64_t hits = 0;             ///< answered from the cache
  std::uint64_t misses = 0;           ///< sent upstream or joined a lookup already upstream
  std::uint64_t upstream_errors = 0;  ///< upstream lookups that ended `unavailable`
};

/// Decorates a UserDirectory with a TTL cache and single flight: concurrent lookups of one
/// name share one upstream request and all complete with its result. `unavailable` is never
/// cached, so the next lookup after an outage asks again. Thread-safe.
class CachedUserDirectory final : public UserDirectory {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  /// `upstream` must outlive this object, and this object must outlive the upstream lookups
  /// it has started (their handlers call back into it). `executor` runs
  /// handlers that have no associated executor; `clock` is injectable for tests.
  CachedUserDirectory(boost::asio::any_io_executor executor, UserDirectory& upstream,
                      UserCacheOptions options = {}, Clock clock = &std::chrono::steady_clock::now);

  UserCacheStats stats() const;

  // UserDirectory
  void verify(std::string username, Handler handler) override;

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  using ExpiryIndex = std::multimap<TimePoint, std::string>;

  struct Entry {
    UserStatus status;
    ExpiryIndex::iterator expiry;  // this entry's node in expiry_index_
  };

  void on_upstream_answer(const std::string& username, UserStatus status);
  /// Caller holds mutex_.
  void store(const std::string& username, UserStatus status, TimePoint now);
  /// Caller holds mutex_.
  void erase(std::unordered_map<std::string, Entry>::iterator entry);

  boost::asio::any_io_executor executor_;
  UserDirectory& upstream_;
  const UserCacheOptions options_;
  const Clock clock_;

  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
  /// Entries ordered by expiry: the front is both the first to drop when expired and the
  /// victim when the cache is full of live entries (the one with the least time left).
  ExpiryIndex expiry_index_;
  /// Names being looked up upstream, with everyone waiting for the answer.
  std::unordered_map<std::string, std::vector<Handler>> in_flight_;

  std::atomic<std::uint64_t> hits_{0};
  std::atomic<std::uint64_t> misses_{0};
  std::atomic<std::uint64_t> upstream_errors_{0};
};

}  // namespace chatd::users
