#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "store/sqlite/sqlite_handle.h"
#include "store/store.h"
#include "store/work_queues.h"

namespace chatd::store::sqlite {

enum class SyncMode {
  normal,  ///< WAL + synchronous=NORMAL: survives a chatd crash; a power loss may drop the last
           ///< commits.
  full,    ///< WAL + synchronous=FULL: every commit is fsynced; survives a power loss.
};

struct SqliteOptions {
  std::string path = "./data/chat.db";
  SyncMode sync = SyncMode::normal;
  std::size_t max_batch = 1024;      ///< Messages per transaction; bounds one commit's latency.
  std::size_t max_queued = 100'000;  ///< Appends waiting for a commit before new ones are refused.
  std::size_t reader_threads =
      2;  ///< Each with its own connection; WAL lets them read during commits.
  int checkpoint_pages = 1000;  ///< New WAL pages after which the checkpoint thread copies them
                                ///< back (PASSIVE: the writer goes on).
  int wal_limit_pages = 16'000;  ///< A WAL longer than this is checkpointed with the writer held,
                                 ///< so it starts over (sustained load never leaves a gap).
};

/// The embedded store: one SQLite file, one row per message.
///
/// Design: a single writer thread owns the write connection and commits in
/// groups: everything appended while a transaction runs goes into the next
/// one, so the cost of a commit (and of an fsync with SYNC=FULL) is shared by
/// every message in it. Sequence numbers come from the writer's cache of each
/// chat's last sequence, which is why one SQLite file serves one chatd
/// process at a time (enforced with a lock file). Reads run on their own
/// connections and threads; WAL lets them proceed while the writer commits.
/// Checkpoints (copying the WAL back into the database file, with its
/// fsyncs) run on a thread of their own; a commit waits for one only when
/// the WAL has passed `wal_limit_pages` and must start over.
class SqliteStore final : public Store {
 public:
  /// Opens (creating if needed) the database and its schema. Throws
  /// SqliteError with a message naming the file when that fails.
  SqliteStore(SqliteOptions options, CommitListener listener, CommitObserver observer = {});
  ~SqliteStore() override;

  // Store
  void append(chat::PendingMessage message, AppendHandler handler) override;
  void history(chat::ChatKey chat, HistoryQuery query, HistoryHandler handler) override;
  void mark_read(chat::ChatKey chat, std::string user, std::uint64_t seq,
                 ReadMarksHandler handler) override;
  void read_marks(chat::ChatKey chat, ReadMarksHandler handler) override;
  void conversations(std::string user, std::size_t limit, ConversationsHandler handler) override;
  bool ready() const override { return ready_.load(std::memory_order_relaxed); }
  void drain() override;

 private:
  struct ChatState {
    sqlite3_int64 id = 0;
    std::uint64_t last_seq = 0;
  };
  struct WriterStatements;
  struct ReaderStatements;

  void writer_loop();
  void reader_loop(std::size_t index);
  void checkpoint_loop();
  static int on_wal_commit(void* self, sqlite3* db, const char* name, int pages);
  void commit(std::vector<Append>& batch, WriterStatements& statements);
  bool write_batch(std::vector<Append>& batch, WriterStatements& statements,
                   std::vector<AppendResult>& results);
  ChatState* chat_state(const chat::ChatKey& chat, WriterStatements& statements);
  HistoryPage read_page(const Read& read, ReaderStatements& statements);
  ReadMarks write_read_mark(const MarkRead& mark, ReaderStatements& statements);
  ConversationList list_conversations(const ListConversations& list,
                                      ReaderStatements& statements);

  SqliteOptions options_;
  CommitListener listener_;
  CommitObserver observer_;
  int lock_fd_ = -1;
  Database writer_db_;
  std::vector<Database> reader_dbs_;
  Database checkpoint_db_;
  std::atomic<bool> ready_{true};

  // Written only on the writer thread.
  std::unordered_map<std::string, ChatState> chats_;

  AppendQueue appends_;

  ReadQueue reads_;

  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_wanted_changed_;
  bool checkpoint_wanted_ = false;  // guarded by checkpoint_mutex_
  int wal_pages_checkpointed_ = 0;  // guarded by checkpoint_mutex_; WAL length at the last one
  bool stopping_ = false;           // guarded by checkpoint_mutex_

  std::thread writer_;
  std::vector<std::thread> readers_;
  std::thread checkpointer_;
};

}  // namespace chatd::store::sqlite
