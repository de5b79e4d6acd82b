#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace chatd::loadgen {

/// One io_context per thread. Both connections of a chat live on the same
/// context, so a chat's state (the sender's window, the receiver's order
/// check) is touched by one thread only and needs no lock.
class IoPool {
 public:
  explicit IoPool(unsigned threads);
  ~IoPool();
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  unsigned size() const { return static_cast<unsigned>(contexts_.size()); }
  boost::asio::io_context& context(unsigned index) { return *contexts_[index]; }

  void start();
  /// Lets each thread end when its work is done, waits at most `patience`,
  /// then stops whatever is left, and joins.
  void finish(std::chrono::milliseconds patience);

 private:
  using Guard = boost::asio::executor_work_guard<boost::asio::io_context::executor_type>;
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<Guard> guards_;
  std::vector<std::thread> threads_;
  std::atomic<unsigned> running_{0};
};

/// Starts `task` on `io`. The coroutines report failures through counters;
/// an exception escaping one is a bug, so it ends the program loudly.
inline void spawn(boost::asio::io_context& io, boost::asio::awaitable<void> task) {
  boost::asio::co_spawn(io, std::move(task), [](std::exception_ptr error) {
    if (error) std::rethrow_exception(error);
  });
}

/// Polls `done` every 5 ms until it is true or `limit` has passed; returns
/// its last value. The main thread only watches counters the workers update.
bool wait_for(const std::function<bool()>& done, std::chrono::steady_clock::duration limit);

}  // namespace chatd::loadgen
