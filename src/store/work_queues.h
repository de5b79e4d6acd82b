#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "store/store.h"

namespace chatd::store {

/// An append waiting for the writer thread.
struct Append {
  chat::PendingMessage message;
  Store::AppendHandler handler;
};

/// A history read waiting for a reader thread.
struct Read {
  using Result = HistoryPage;
  chat::ChatKey chat;
  HistoryQuery query;
  Store::HistoryHandler handler;
};

/// A read receipt to record (`seq` 0: only read the marks), on a reader thread:
/// a one-row upsert, too small to be worth the group commit's ordering.
struct MarkRead {
  using Result = ReadMarks;
  chat::ChatKey chat;
  std::string user;
  std::uint64_t seq = 0;
  Store::ReadMarksHandler handler;
};

/// A user's conversation list to read.
struct ListConversations {
  using Result = ConversationList;
  std::string user;
  std::size_t limit = 0;
  Store::ConversationsHandler handler;
};

/// The users one user blocks.
struct ListBlocks {
  using Result = BlockList;
  std::string user;
  Store::BlocksHandler handler;
};

/// What the reader threads do.
using ReadJob = std::variant<Read, MarkRead, ListConversations, ListBlocks>;

/// What the two queues below share: jobs waiting for a store thread, at most
/// `max_queued` of them, and a count of the jobs refused past that bound.
template <typename Job>
class BoundedQueue {
 public:
  explicit BoundedQueue(std::size_t max_queued) : max_queued_(max_queued) {}

  /// Jobs waiting for a thread. Any thread.
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return jobs_.size();
  }
  /// Jobs refused (answered `overloaded`) so far. Any thread.
  std::uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

  /// Lets the store's threads return once the queue is empty.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
  }

 protected:
  /// With mutex_ held: queues `job`, or counts a refusal and leaves `job` to
  /// the caller when max_queued jobs wait already.
  bool push_locked(Job& job) {
    if (jobs_.size() >= max_queued_) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    jobs_.push_back(std::move(job));
    return true;
  }

  const std::size_t max_queued_;
  std::atomic<std::uint64_t> refused_{0};
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
};

/// The appends waiting for a store's next group commit. Whatever is queued
/// while the writer commits a batch is taken as the next batch, whole (up to
/// the batch bound).
class AppendQueue : public BoundedQueue<Append> {
 public:
  using BoundedQueue::BoundedQueue;

  /// Queues an append, or completes it at once with `shutting_down` (after
  /// drain()) or `overloaded` (max_queued waiting). Any thread.
  void push(chat::PendingMessage message, Store::AppendHandler handler);

  /// Writer thread: waits for appends and moves up to `max_batch` of them to
  /// `batch`. Returns false when stopped and nothing is left to commit.
  bool take(std::vector<Append>& batch, std::size_t max_batch);
  /// Writer thread: the batch last taken is committed and announced.
  void done();

  /// Refuses new appends and waits until everything queued is done.
  void drain();

 private:
  std::condition_variable idle_;
  bool writing_ = false;
  bool draining_ = false;
};

/// Reads (and read receipts) waiting for a store's reader threads.
class ReadQueue : public BoundedQueue<ReadJob> {
 public:
  using BoundedQueue::BoundedQueue;

  /// Queues a job, or answers it at once with `overloaded` when max_queued
  /// jobs wait already. Any thread.
  void push(ReadJob job);
  /// Reader thread: waits for a job; nullopt when stopped and empty.
  std::optional<ReadJob> pop();
};

}  // namespace chatd::store
