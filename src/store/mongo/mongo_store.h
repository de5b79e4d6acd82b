#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/mongo/mongo_connection.h"
#include "store/store.h"
#include "store/work_queues.h"

namespace chatd::store::mongo {

class BatchWriter;

struct MongoOptions {
  std::string uri;  ///< MONGO_URI; the database is its path (default "chat").
  /// Messages per bulk write. 100, not SQLite's 1024: FerretDB 1.24 inserts in
  /// internal batches of 100 and, past a refused document, goes on with the
  /// next one, so a larger ordered bulk could store a chat's messages out of
  /// order after a sequence race. One round trip per 100 messages is still
  /// group commit.
  std::size_t max_batch = 100;
  std::size_t max_queued = 100'000;  ///< Appends waiting for a commit before new ones are refused.
  std::size_t reader_threads = 2;    ///< History reads in flight at once, one client each.
  /// Reconnect backoff: doubles from min to max while the server is away.
  std::chrono::milliseconds retry_min{250};
  std::chrono::milliseconds retry_max{5000};
};

/// The MongoDB store (libmongoc): one document per message, one per chat.
///
/// Threads, as in SqliteStore: one writer thread does group commit (every
/// append queued while a bulk write runs goes into the next one, across
/// chats; see BatchWriter for the round trips and sequence numbers), reader
/// threads serve history, and a monitor thread owns reachability: at start it
/// creates the indexes, retrying with backoff while the server is away, and
/// whenever an operation finds the server gone it pings until it is back.
/// While the store is not ready, appends and reads fail at once with
/// `unavailable` instead of each waiting out the driver's server selection,
/// so /readyz says 503, new sessions close 1013 and sends get
/// store_unavailable — and all of it heals by itself when the server returns.
class MongoStore final : public Store {
 public:
  /// Parses the URI and starts the threads; connecting happens in the
  /// background. Throws MongoError when the URI cannot work.
  MongoStore(MongoOptions options, CommitListener listener, CommitObserver observer = {});
  ~MongoStore() override;

  // Store
  void append(chat::PendingMessage message, AppendHandler handler) override;
  void history(chat::ChatKey chat, HistoryQuery query, HistoryHandler handler) override;
  void mark_read(chat::ChatKey chat, std::string user, std::uint64_t seq,
                 ReadMarksHandler handler) override;
  void read_marks(chat::ChatKey chat, ReadMarksHandler handler) override;
  void conversations(std::string user, std::size_t limit, ConversationsHandler handler) override;
  bool ready() const override { return ready_.load(std::memory_order_relaxed); }
  void drain() override;

  const std::string& description() const { return connection_.description(); }

 private:
  void writer_loop();
  void reader_loop();
  void monitor_loop();
  void commit(BatchWriter& writer, std::vector<Append>& batch);
  HistoryPage read_page(mongoc_client_t* client, const Read& read);
  // mongo_reads.cpp: read receipts and conversation lists.
  ReadMarks write_read_mark(mongoc_client_t* client, const MarkRead& mark);
  ConversationList list_conversations(mongoc_client_t* client, const ListConversations& list);
  /// An operation found the server unreachable: not ready until a ping works.
  void mark_unreachable();

  MongoOptions options_;
  CommitListener listener_;
  CommitObserver observer_;
  Connection connection_;
  std::atomic<bool> ready_{false};

  std::mutex state_mutex_;  ///< Guards the monitor's state and stopping_.
  std::condition_variable state_changed_;
  bool indexes_created_ = false;
  bool stopping_ = false;

  AppendQueue appends_;

  ReadQueue reads_;

  std::thread monitor_;
  std::thread writer_;
  std::vector<std::thread> readers_;
};

}  // namespace chatd::store::mongo
