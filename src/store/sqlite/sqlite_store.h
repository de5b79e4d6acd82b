#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/backend.h"
#include "store/queued_store.h"
#include "store/sqlite/lock_file.h"
#include "store/sqlite/sqlite_handle.h"

namespace chatd::store::sqlite {

enum class SyncMode {
  normal,  ///< WAL + synchronous=NORMAL: survives a chatd crash; a power loss may drop the last
           ///< commits.
  full,    ///< WAL + synchronous=FULL: every commit is fsynced; survives a power loss.
};

/// The mode's name as SQLITE_SYNC spells it: "normal" or "full".
inline const char* to_string(SyncMode mode) {
  return mode == SyncMode::full ? "full" : "normal";
}

struct SqliteOptions {
  /// SQLITE_PATH: under the working directory, created with its directory.
  std::string path = "./data/chat.db";
  /// SQLITE_SYNC: a crash of chatd loses nothing committed; `full` adds an
  /// fsync per group commit for power losses.
  SyncMode sync = SyncMode::normal;
  std::size_t max_batch = 1024;  ///< Messages per transaction; bounds one commit's latency.
  std::size_t max_queued_appends = QueueOptions{}.max_queued_appends;
  std::size_t max_queued_reads = QueueOptions{}.max_queued_reads;
  std::size_t reader_threads =
      2;  ///< Each with its own connection; WAL lets them read during commits.
  int checkpoint_pages = 1000;   ///< New WAL pages after which the checkpoint thread copies them
                                 ///< back (PASSIVE: the writer goes on).
  int wal_limit_pages = 16'000;  ///< A WAL longer than this is checkpointed with the writer held,
                                 ///< so it starts over (sustained load never leaves a gap).
  /// Chats whose id and last seq the writer keeps; past it the cache is emptied
  /// and refills from `chats` (one indexed lookup per chat written again). Not a
  /// setting: at about 150 bytes a chat it stays near 15 MB, and a miss costs
  /// less than the commit's fsync.
  std::size_t max_cached_chats = 100'000;
  /// WEBHOOK_EVENTS lists message.read: a receipt that moves forward is kept
  /// as an event to send (reads.hook_seq).
  bool read_hooks = false;
};

/// The embedded backend: one SQLite file, one row per message.
///
/// Design: QueuedStore's single writer thread owns the write connection and
/// commits each group in one transaction (SqliteWriter). Reads run on their
/// own connections and threads (SqliteReader); WAL lets them proceed while the
/// writer commits. Checkpoints (copying the WAL back into the database file,
/// with its fsyncs) run on a thread of their own; a commit waits for one only
/// when the WAL has passed `wal_limit_pages` and must start over.
class SqliteBackend final : public Backend {
 public:
  /// Opens (creating if needed) the database and its schema. Throws
  /// SqliteError with a message naming the file when that fails.
  explicit SqliteBackend(const SqliteOptions& options);
  ~SqliteBackend() override;

  // Backend
  std::unique_ptr<Committer> make_committer() override;
  std::unique_ptr<Reader> make_reader(std::size_t index) override;
  /// A connection of its own: the outbox commits its own small writes.
  std::unique_ptr<Outbox> make_outbox() override;
  std::unique_ptr<Maintenance> make_maintenance() override;
  bool ready() const override { return ready_.load(std::memory_order_relaxed); }

 private:
  Database open_connection() const;
  void checkpoint_loop();
  static int on_wal_commit(void* self, sqlite3* db, const char* name, int pages);

  const SqliteOptions options_;
  // Declared first: released after every connection is closed.
  LockFile lock_;
  Database writer_db_;
  std::vector<Database> reader_dbs_;
  Database checkpoint_db_;
  std::atomic<bool> ready_{true};

  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_wanted_changed_;
  bool checkpoint_wanted_ = false;  // guarded by checkpoint_mutex_
  int wal_pages_checkpointed_ = 0;  // guarded by checkpoint_mutex_; WAL length at the last one
  bool stopping_ = false;           // guarded by checkpoint_mutex_
  std::thread checkpointer_;
};

/// The SQLite store: QueuedStore in front of SqliteBackend.
class SqliteStore final : public QueuedStore {
 public:
  SqliteStore(const SqliteOptions& options, CommitListener listener, CommitObserver observer = {});
};

}  // namespace chatd::store::sqlite
