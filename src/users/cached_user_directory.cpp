#include "users/cached_user_directory.h"

#include <utility>

#include "util/post_result.h"

namespace chatd::users {

CachedUserDirectory::CachedUserDirectory(boost::asio::any_io_executor executor,
                                         UserDirectory& upstream, UserCacheOptions options,
                                         Clock clock)
    : executor_(std::move(executor)),
      upstream_(upstream),
      options_(options),
      clock_(std::move(clock)) {}

UserCacheStats CachedUserDirectory::stats() const {
  return {hits_.load(std::memory_order_relaxed), misses_.load(std::memory_order_relaxed),
          upstream_errors_.load(std::memory_order_relaxed)};
}

void CachedUserDirectory::verify(std::string username, Handler handler) {
  {
    std::unique_lock lock(mutex_);
    if (auto entry = entries_.find(username); entry != entries_.end()) {
      if (clock_() < entry->second.expiry->first) {
        const UserStatus status = entry->second.status;
        lock.unlock();
        hits_.fetch_add(1, std::memory_order_relaxed);
        util::post_result_or(std::move(handler), executor_, status);
        return;
      }
      erase(entry);
    }
    misses_.fetch_add(1, std::memory_order_relaxed);
    // Single flight: a lookup of this name is already upstream, wait for its answer.
    auto [waiters, first] = in_flight_.try_emplace(username);
    waiters->second.push_back(std::move(handler));
    if (!first) return;
  }
  // Outside the lock: the upstream may call back before verify() returns.
  upstream_.verify(username,
                   [this, username](UserStatus status) { on_upstream_answer(username, status); });
}

void CachedUserDirectory::on_upstream_answer(const std::string& username, UserStatus status) {
  if (status == UserStatus::unavailable) upstream_errors_.fetch_add(1, std::memory_order_relaxed);
  std::vector<Handler> waiters;
  {
    std::lock_guard lock(mutex_);
    if (auto node = in_flight_.find(username); node != in_flight_.end()) {
      waiters = std::move(node->second);
      in_flight_.erase(node);
    }
    if (status != UserStatus::unavailable) store(username, status, clock_());
  }
  for (Handler& waiter : waiters) util::post_result_or(std::move(waiter), executor_, status);
}

void CachedUserDirectory::store(const std::string& username, UserStatus status, TimePoint now) {
  if (options_.max_entries == 0) return;
  if (auto old = entries_.find(username); old != entries_.end()) erase(old);
  // Expired entries go first; if every entry is still live, the one closest to expiry does.
  while (!expiry_index_.empty() &&
         (expiry_index_.begin()->first <= now || entries_.size() >= options_.max_entries)) {
    erase(entries_.find(expiry_index_.begin()->second));
  }
  const auto ttl = status == UserStatus::found ? options_.positive_ttl : options_.negative_ttl;
  if (ttl <= std::chrono::milliseconds::zero()) return;
  auto expiry = expiry_index_.emplace(now + ttl, username);
  entries_.emplace(username, Entry{status, expiry});
}

void CachedUserDirectory::erase(std::unordered_map<std::string, Entry>::iterator entry) {
  expiry_index_.erase(entry->second.expiry);
  entries_.erase(entry);
}

}  // namespace chatd::users
