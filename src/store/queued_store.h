#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "store/backend.h"
#include "store/store.h"
#include "store/work_queues.h"

namespace chatd::store {

/// The queues and threads in front of a backend.
struct QueueOptions {
  std::size_t max_batch = 1024;  ///< Messages per group commit.
  /// Appends waiting for a group commit (STORE_MAX_QUEUED_APPENDS); past it a
  /// send is answered `overloaded`. The bound the store always had; it holds
  /// at most this × (text + ~300 bytes).
  std::size_t max_queued_appends = 100'000;
  /// Reads (history, receipts, conversation lists) waiting for a reader thread
  /// (STORE_MAX_QUEUED_READS); past it a read is answered `overloaded`. One per
  /// connection at the default MAX_CONNECTIONS: a reconnect storm reads every
  /// connection's history at once.
  std::size_t max_queued_reads = 100'000;
  std::size_t reader_threads = 2;  ///< At least 1.
};

/// The queue options out of a backend's options, which name them alike.
template <typename BackendOptions>
QueueOptions queue_options_of(const BackendOptions& options) {
  return QueueOptions{.max_batch = options.max_batch,
                      .max_queued_appends = options.max_queued_appends,
                      .max_queued_reads = options.max_queued_reads,
                      .reader_threads = std::max<std::size_t>(1, options.reader_threads)};
}

/// A Store made of a Backend and the plumbing every backend shares.
///
/// Design: appends wait in one bounded queue for the single writer thread,
/// which takes everything queued while it committed the previous group as the
/// next group (up to max_batch): the cost of a commit is shared by every
/// message in it, and one writer keeps each chat's sequence in one order.
/// Reads and receipts wait in a second bounded queue for the reader threads,
/// so a slow commit never holds up a history page. Past either bound a call is
/// answered `overloaded` at once. Every answer is posted to the caller's
/// executor; no I/O thread ever waits on the database.
///
/// A backend's committer and readers are made on the threads that use them.
/// Destruction drains the appends, stops the threads, then destroys the backend.
class QueuedStore : public Store {
 public:
  QueuedStore(std::unique_ptr<Backend> backend, QueueOptions options, CommitListener listener,
              CommitObserver observer);
  ~QueuedStore() override;
  QueuedStore(const QueuedStore&) = delete;
  QueuedStore& operator=(const QueuedStore&) = delete;

  // Store
  void append(chat::PendingMessage message, AppendHandler handler) override;
  void history(chat::ChatKey chat, HistoryQuery query, HistoryHandler handler) override;
  void mark_read(chat::ChatKey chat, std::string user, std::uint64_t seq,
                 ReadMarksHandler handler) override;
  void read_marks(chat::ChatKey chat, ReadMarksHandler handler) override;
  void conversations(std::string user, std::size_t limit, ConversationsHandler handler) override;
  bool ready() const override { return backend_->ready(); }
  QueueStats queue_stats() const override;
  void blocks(std::string user, BlocksHandler handler) override;
  std::unique_ptr<Outbox> make_outbox() override { return backend_->make_outbox(); }
  std::unique_ptr<Maintenance> make_maintenance() override { return backend_->make_maintenance(); }
  void drain() override;

 protected:
  Backend& backend() const { return *backend_; }

 private:
  void writer_loop();
  void reader_loop(std::size_t index);
  void commit(Committer& committer, std::vector<Append>& batch);

  // Declared first: destroyed after the threads below are joined.
  std::unique_ptr<Backend> backend_;
  const QueueOptions options_;
  CommitListener listener_;
  CommitObserver observer_;
  AppendQueue appends_;
  ReadQueue reads_;
  std::atomic<std::uint64_t> batches_{0};
  std::thread writer_;
  std::vector<std::thread> readers_;
};

}  // namespace chatd::store
