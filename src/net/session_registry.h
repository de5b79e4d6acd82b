#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace chatd::net {

/// Something the server must be able to close at shutdown.
class Closable {
 public:
  virtual ~Closable() = default;
  /// Closes with 1001 once the frames already queued are sent. Any thread.
  virtual void close_for_shutdown() = 0;
};

/// Every open WebSocket session, for the drain at shutdown.
class SessionRegistry {
 public:
  void add(const std::shared_ptr<Closable>& session);
  void remove(const Closable* session);
  std::size_t size() const;
  /// Asks every session to close (1001).
  void close_all();
  /// Waits until no session is left or the deadline passes; true when empty.
  bool wait_empty_until(std::chrono::steady_clock::time_point deadline);

 private:
  mutable std::mutex mutex_;
  std::condition_variable empty_;
  std::unordered_map<const Closable*, std::weak_ptr<Closable>> sessions_;
};

}  // namespace chatd::net
