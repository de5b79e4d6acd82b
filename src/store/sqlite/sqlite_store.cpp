#include "store/sqlite/sqlite_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>

#include "store/sqlite/sqlite_maintenance.h"
#include "store/sqlite/sqlite_outbox.h"
#include "store/sqlite/sqlite_reader.h"
#include "store/sqlite/sqlite_schema.h"
#include "store/sqlite/sqlite_writer.h"
#include "util/thread_name.h"

namespace chatd::store::sqlite {
namespace {

bool has_column(sqlite3* db, const char* table, const char* column) {
  Statement info = prepare_or_throw(db, "SELECT 1 FROM pragma_table_info(?) WHERE name = ?");
  bind_text(info.get(), 1, table);
  bind_text(info.get(), 2, column);
  return sqlite3_step(info.get()) == SQLITE_ROW;
}

// The database's path, once its directory exists.
const std::string& with_directory(const std::string& db_path) {
  const std::filesystem::path path(db_path);
  if (path.has_parent_path()) {
    std::error_code error;
    std::filesystem::create_directories(path.parent_path(), error);
    if (error) {
      throw SqliteError("cannot create directory '" + path.parent_path().string() +
                        "' for SQLITE_PATH: " + error.message());
    }
  }
  return db_path;
}

}  // namespace

SqliteBackend::SqliteBackend(const SqliteOptions& options)
    : options_(options), lock_(with_directory(options_.path)) {
  writer_db_ = open_connection();
  exec_or_throw(writer_db_.get(), "PRAGMA journal_mode=WAL");
  // A WAL that grew during a burst is cut back to this when it starts over.
  exec_or_throw(writer_db_.get(), "PRAGMA journal_size_limit=67108864");
  exec_or_throw(writer_db_.get(), kSchema);
  if (!has_column(writer_db_.get(), "reads", "hook_seq")) {
    exec_or_throw(writer_db_.get(),
                  "ALTER TABLE reads ADD COLUMN hook_seq INTEGER NOT NULL DEFAULT 0;"
                  "ALTER TABLE reads ADD COLUMN hook_ms INTEGER NOT NULL DEFAULT 0");
  }
  if (!has_column(writer_db_.get(), "messages", "hooks")) {
    exec_or_throw(writer_db_.get(),
                  "ALTER TABLE messages ADD COLUMN hooks INTEGER NOT NULL DEFAULT 0");
  }
  // Databases made before edits, deletes and blocks: every row is a message.
  if (!has_column(writer_db_.get(), "messages", "kind")) {
    exec_or_throw(writer_db_.get(),
                  "ALTER TABLE messages ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;"
                  "ALTER TABLE messages ADD COLUMN target INTEGER NOT NULL DEFAULT 0;"
                  "ALTER TABLE messages ADD COLUMN edited_ms INTEGER NOT NULL DEFAULT 0;"
                  "ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;"
                  "ALTER TABLE messages ADD COLUMN target_id TEXT");
  }
  if (!has_column(writer_db_.get(), "chats", "blocks")) {
    exec_or_throw(writer_db_.get(),
                  "ALTER TABLE chats ADD COLUMN blocks INTEGER NOT NULL DEFAULT 0;"
                  "ALTER TABLE chats ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0");
  }
  exec_or_throw(writer_db_.get(), kOutboxSchema);
  for (std::size_t i = 0; i < std::max<std::size_t>(1, options_.reader_threads); ++i) {
    reader_dbs_.push_back(open_connection());
  }
  checkpoint_db_ = open_connection();
  // Every connection that commits (the writer, and readers storing receipts)
  // hands checkpoints to the checkpoint thread instead of running them
  // inside its own commit, where the fsyncs would hold up every message.
  sqlite3_wal_hook(writer_db_.get(), &SqliteBackend::on_wal_commit, this);
  for (auto& reader : reader_dbs_) {
    sqlite3_wal_hook(reader.get(), &SqliteBackend::on_wal_commit, this);
  }
  sqlite3_wal_autocheckpoint(checkpoint_db_.get(), 0);
  // A connection learns that the file is in WAL mode when it first reads it;
  // until then a checkpoint through it does nothing.
  exec_or_throw(checkpoint_db_.get(), "PRAGMA journal_mode=WAL");
  // Statements are prepared here so a schema problem fails start-up.
  SqliteWriter check_writer(writer_db_.get(), ready_, options_.max_cached_chats);
  SqliteReader check_reader(reader_dbs_.front().get(), options_.read_hooks);
  checkpointer_ = std::thread([this] {
    util::name_this_thread("chatd-checkpoint");
    checkpoint_loop();
  });
}

// QueuedStore has joined the writer and the readers, whose statements are
// finalized; the connections close here, the writer's last: closing the last
// connection checkpoints the WAL. The lock goes after them.
SqliteBackend::~SqliteBackend() {
  {
    std::lock_guard lock(checkpoint_mutex_);
    stopping_ = true;
  }
  checkpoint_wanted_changed_.notify_one();
  checkpointer_.join();
  checkpoint_db_.reset();
  reader_dbs_.clear();
  writer_db_.reset();
}

std::unique_ptr<Committer> SqliteBackend::make_committer() {
  return std::make_unique<SqliteWriter>(writer_db_.get(), ready_, options_.max_cached_chats);
}

// synchronous is a connection's own setting: every connection that commits
// (the writer, readers storing receipts, the outbox settling events) needs
// SQLITE_SYNC's, or SQLite's default (FULL) fsyncs the WAL at each of its commits.
Database SqliteBackend::open_connection() const {
  Database db = open_database(options_.path);
  exec_or_throw(db.get(), options_.sync == SyncMode::full ? "PRAGMA synchronous=FULL"
                                                          : "PRAGMA synchronous=NORMAL");
  return db;
}

std::unique_ptr<Reader> SqliteBackend::make_reader(std::size_t index) {
  return std::make_unique<SqliteReader>(reader_dbs_.at(index).get(), options_.read_hooks);
}

std::unique_ptr<Maintenance> SqliteBackend::make_maintenance() {
  Database db = open_connection();
  sqlite3_wal_hook(db.get(), &SqliteBackend::on_wal_commit, this);
  return std::make_unique<SqliteMaintenance>(std::move(db));
}

std::unique_ptr<Outbox> SqliteBackend::make_outbox() {
  Database db = open_connection();
  sqlite3_wal_hook(db.get(), &SqliteBackend::on_wal_commit, this);
  return std::make_unique<SqliteOutbox>(std::move(db));
}

// ---------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------

// Runs on the committing connection's thread, after its commit; `pages` is
// the WAL's length, which starts over from 0 after a complete checkpoint.
int SqliteBackend::on_wal_commit(void* self, sqlite3* /*db*/, const char* /*name*/, int pages) {
  auto* store = static_cast<SqliteBackend*>(self);
  {
    std::lock_guard lock(store->checkpoint_mutex_);
    if (pages < store->wal_pages_checkpointed_) store->wal_pages_checkpointed_ = 0;
    if (store->checkpoint_wanted_ ||
        pages - store->wal_pages_checkpointed_ < store->options_.checkpoint_pages) {
      return SQLITE_OK;
    }
    store->checkpoint_wanted_ = true;
  }
  store->checkpoint_wanted_changed_.notify_one();
  return SQLITE_OK;
}

// A PASSIVE checkpoint copies what no reader still needs and never blocks the
// writer, which goes on appending meanwhile. The WAL starts over once a
// checkpoint has copied all of it, which under sustained load never happens
// by itself: past `wal_limit_pages` a RESTART checkpoint holds the writer
// for the rest (the passive ones copied most) and makes it start over.
void SqliteBackend::checkpoint_loop() {
  std::unique_lock lock(checkpoint_mutex_);
  while (true) {
    checkpoint_wanted_changed_.wait(lock, [this] { return checkpoint_wanted_ || stopping_; });
    if (stopping_) return;
    lock.unlock();
    sqlite3* db = checkpoint_db_.get();
    int wal_pages = 0;
    int copied_pages = 0;
    int rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_pages,
                                       &copied_pages);
    if (rc == SQLITE_OK && wal_pages > options_.wal_limit_pages) {
      rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_RESTART, &wal_pages,
                                     &copied_pages);
      if (rc == SQLITE_OK) wal_pages = 0;
    }
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      spdlog::warn("sqlite: checkpoint failed ({} of {} WAL pages copied): {}", copied_pages,
                   wal_pages, sqlite3_errmsg(db));
    }
    lock.lock();
    checkpoint_wanted_ = false;
    wal_pages_checkpointed_ = std::max(0, wal_pages);
  }
}

SqliteStore::SqliteStore(const SqliteOptions& options, CommitListener listener,
                         CommitObserver observer)
    : QueuedStore(std::make_unique<SqliteBackend>(options), queue_options_of(options),
                  std::move(listener), std::move(observer)) {}

}  // namespace chatd::store::sqlite
