#include "store/work_queues.h"

#include <algorithm>

#include "util/post_result.h"

namespace chatd::store {

void AppendQueue::push(chat::PendingMessage message, Store::AppendHandler handler) {
  StoreError refused = StoreError::none;
  {
    std::lock_guard lock(mutex_);
    if (draining_) {
      refused = StoreError::shutting_down;
    } else if (appends_.size() >= max_queued_) {
      refused = StoreError::overloaded;
    } else {
      appends_.push_back(Append{std::move(message), std::move(handler)});
    }
  }
  if (refused != StoreError::none) {
    util::post_result(std::move(handler), AppendResult{refused, nullptr, false});
    return;
  }
  ready_.notify_one();
}

bool AppendQueue::take(std::vector<Append>& batch, std::size_t max_batch) {
  std::unique_lock lock(mutex_);
  ready_.wait(lock, [&] { return stopping_ || !appends_.empty(); });
  if (appends_.empty()) return false;  // stopping, and everything is committed
  const auto count = static_cast<std::ptrdiff_t>(std::min(appends_.size(), max_batch));
  std::move(appends_.begin(), appends_.begin() + count, std::back_inserter(batch));
  appends_.erase(appends_.begin(), appends_.begin() + count);
  writing_ = true;
  return true;
}

void AppendQueue::done() {
  {
    std::lock_guard lock(mutex_);
    writing_ = false;
  }
  idle_.notify_all();
}

void AppendQueue::drain() {
  std::unique_lock lock(mutex_);
  draining_ = true;
  idle_.wait(lock, [&] { return appends_.empty() && !writing_; });
}

void AppendQueue::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
}

void ReadQueue::push(ReadJob job) {
  {
    std::lock_guard lock(mutex_);
    reads_.push_back(std::move(job));
  }
  ready_.notify_one();
}

std::optional<ReadJob> ReadQueue::pop() {
  std::unique_lock lock(mutex_);
  ready_.wait(lock, [&] { return stopping_ || !reads_.empty(); });
  if (reads_.empty()) return std::nullopt;
  std::optional<ReadJob> read(std::move(reads_.front()));
  reads_.pop_front();
  return read;
}

void ReadQueue::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
}

}  // namespace chatd::store
