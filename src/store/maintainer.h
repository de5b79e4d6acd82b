#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "store/maintenance.h"
#include "store/store.h"

namespace chatd::store {

/// RETENTION_DAYS and how its purge runs.
struct RetentionOptions {
  std::chrono::milliseconds keep{0};                            ///< 0: keep forever.
  std::chrono::milliseconds interval{std::chrono::minutes(5)};  ///< Between passes.
  std::size_t batch = 1000;                                     ///< Rows removed per transaction.
};

/// The maintenance thread: retention passes on a timer, and the operators'
/// jobs (erasure, export pages) in the order they come. Its Maintenance has
/// its own connection; every step is a bounded batch, and the thread yields
/// the database between steps, so commits go on during a purge.
class Maintainer {
 public:
  /// Told after each purge step that removed entries, on this thread.
  using PurgeObserver = std::function<void(std::size_t removed)>;
  /// A job; `maintenance` is nullptr when the database could not be opened.
  using Job = std::function<void(Maintenance* maintenance)>;

  Maintainer(Store& store, RetentionOptions retention, PurgeObserver observer);
  /// Runs no further job (those waiting get nullptr) and joins the thread.
  ~Maintainer();
  Maintainer(const Maintainer&) = delete;
  Maintainer& operator=(const Maintainer&) = delete;

  /// Runs `job` on the maintenance thread. Any thread.
  void post(Job job);

 private:
  void run();
  /// One purge step; false when the pass is done or failed.
  bool purge_step(Maintenance& maintenance);

  Store& store_;
  const RetentionOptions retention_;
  PurgeObserver observer_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace chatd::store
