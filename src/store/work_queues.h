#pragma once

#include <condition_variable>
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
  chat::ChatKey chat;
  HistoryQuery query;
  Store::HistoryHandler handler;
};

/// A read receipt to record (`seq` 0: only read the marks), on a reader thread:
/// a one-row upsert, too small to be worth the group commit's ordering.
struct MarkRead {
  chat::ChatKey chat;
  std::string user;
  std::uint64_t seq = 0;
  Store::ReadMarksHandler handler;
};

/// A user's conversation list to read.
struct ListConversations {
  std::string user;
  std::size_t limit = 0;
  Store::ConversationsHandler handler;
};

/// What the reader threads do.
using ReadJob = std::variant<Read, MarkRead, ListConversations>;

/// The appends waiting for a store's next group commit, shared by the store
/// implementations. Whatever is queued while the writer commits a batch is
/// taken as the next batch, whole (up to the batch bound).
class AppendQueue {
 public:
  explicit AppendQueue(std::size_t max_queued) : max_queued_(max_queued) {}

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
  /// Lets take() return false once the queue is empty.
  void stop();

 private:
  const std::size_t max_queued_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::condition_variable idle_;
  std::deque<Append> appends_;
  bool writing_ = false;
  bool draining_ = false;
  bool stopping_ = false;
};

/// Reads (and read receipts) waiting for a store's reader threads.
class ReadQueue {
 public:
  void push(ReadJob job);
  /// Reader thread: waits for a job; nullopt when stopped and empty.
  std::optional<ReadJob> pop();
  void stop();

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<ReadJob> reads_;
  bool stopping_ = false;
};

}  // namespace chatd::store
