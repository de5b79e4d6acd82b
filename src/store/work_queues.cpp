#include "store/work_queues.h"

#include <algorithm>
#include <type_traits>

#include "util/post_result.h"

namespace chatd::store {

void AppendQueue::push(chat::PendingMessage message, Store::AppendHandler handler) {
  Append append{std::move(message), std::move(handler)};
  StoreError refused = StoreError::none;
  {
    std::lock_guard lock(mutex_);
    if (draining_) {
      refused = StoreError::shutting_down;
    } else if (!push_locked(append)) {
      refused = StoreError::overloaded;
    }
  }
  if (refused != StoreError::none) {
    util::post_result(std::move(append.handler), AppendResult{refused, nullptr, false});
    return;
  }
  ready_.notify_one();
}

bool AppendQueue::take(std::vector<Append>& batch, std::size_t max_batch) {
  std::unique_lock lock(mutex_);
  ready_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
  if (jobs_.empty()) return false;  // stopping, and everything is committed
  const auto count = static_cast<std::ptrdiff_t>(std::min(jobs_.size(), max_batch));
  std::move(jobs_.begin(), jobs_.begin() + count, std::back_inserter(batch));
  jobs_.erase(jobs_.begin(), jobs_.begin() + count);
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
  idle_.wait(lock, [&] { return jobs_.empty() && !writing_; });
}

void ReadQueue::push(ReadJob job) {
  bool queued = false;
  {
    std::lock_guard lock(mutex_);
    queued = push_locked(job);
  }
  if (queued) {
    ready_.notify_one();
    return;
  }
  std::visit(
      [](auto& refused) {
        typename std::decay_t<decltype(refused)>::Result result;
        result.error = StoreError::overloaded;
        util::post_result(std::move(refused.handler), std::move(result));
      },
      job);
}

std::optional<ReadJob> ReadQueue::pop() {
  std::unique_lock lock(mutex_);
  ready_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
  if (jobs_.empty()) return std::nullopt;
  std::optional<ReadJob> read(std::move(jobs_.front()));
  jobs_.pop_front();
  return read;
}

}  // namespace chatd::store
