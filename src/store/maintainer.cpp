#include "store/maintainer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "util/thread_name.h"

namespace chatd::store {
namespace {

/// The shortest pause between two purge steps of a pass: at most 20 steps a
/// second, RETENTION_BATCH rows each (20,000 rows/s by default, 1.7 billion a
/// day). A faster purge holds no lock for long, yet what it rewrites (the WAL
/// it fills, which the checkpoints copy back, and its CPU on a small machine)
/// showed in every chat's commit latency (bench/retention).
constexpr std::chrono::milliseconds kBetweenSteps{50};
/// A step is followed by a pause this many times as long as it took: a purge
/// holds the database a fifth of the time at most, and what it rewrites (the
/// WAL it fills, which the checkpoints copy back) stays a fraction of what
/// the disk takes, so that commits keep their latency (bench/retention).
constexpr int kRestPerStep = 4;
/// The wait before opening the database again after it failed.
constexpr std::chrono::seconds kRetryOpen{5};

}  // namespace

Maintainer::Maintainer(Store& store, RetentionOptions retention, PurgeObserver observer)
    : store_(store), retention_(retention), observer_(std::move(observer)) {
  thread_ = std::thread([this] {
    util::name_this_thread("chatd-maintain");
    run();
  });
}

Maintainer::~Maintainer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Maintainer::post(Job job) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      jobs_.push_back(std::move(job));
      job = nullptr;
    }
  }
  if (job) {
    job(nullptr);
    return;
  }
  wake_.notify_all();
}

void Maintainer::run() {
  std::unique_ptr<Maintenance> maintenance;
  auto opened_at = std::chrono::steady_clock::time_point{};
  const auto open = [&] {
    if (maintenance) return true;
    const auto now = std::chrono::steady_clock::now();
    if (opened_at != std::chrono::steady_clock::time_point{} && now - opened_at < kRetryOpen) {
      return false;
    }
    opened_at = now;
    try {
      maintenance = store_.make_maintenance();
    } catch (const std::exception& error) {
      spdlog::error("maintenance: cannot open the database: {}", error.what());
    }
    return maintenance != nullptr;
  };
  const bool retention = retention_.keep.count() > 0;
  auto next_pass = std::chrono::steady_clock::now();
  bool in_pass = false;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (!jobs_.empty()) {
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job(open() ? maintenance.get() : nullptr);
      lock.lock();
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    if (retention && (in_pass || now >= next_pass)) {
      lock.unlock();
      const auto step_started = std::chrono::steady_clock::now();
      in_pass = open() && purge_step(*maintenance);
      const auto took = std::chrono::steady_clock::now() - step_started;
      lock.lock();
      if (!in_pass) next_pass = std::chrono::steady_clock::now() + retention_.interval;
      wake_.wait_for(
          lock, std::max<std::chrono::steady_clock::duration>(kBetweenSteps, kRestPerStep * took),
          [this] { return stopping_; });
      continue;
    }
    if (retention) {
      wake_.wait_until(lock, next_pass, [this] { return stopping_ || !jobs_.empty(); });
    } else {
      wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    }
  }
  std::deque<Job> left = std::move(jobs_);
  lock.unlock();
  for (auto& job : left) job(nullptr);
}

bool Maintainer::purge_step(Maintenance& maintenance) {
  const std::int64_t before = chat::now_ms() - retention_.keep.count();
  try {
    const PurgeStep step = maintenance.purge(before, retention_.batch);
    if (step.removed > 0 && observer_) observer_(step.removed);
    return !step.done;
  } catch (const MaintenanceError& error) {
    spdlog::error("retention: {}", error.what());
    return false;
  }
}

}  // namespace chatd::store
