// chatd_ceiling --mode persist: the message log in SQLite. chatd_ceiling is the
// floor chatd is measured against, so this store keeps chatd's schema, pragmas,
// connection set-up and checkpointing (the same costs per message) and leaves
// out everything else chatd's store does.
#include "ceiling/sqlite_log.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "store/sqlite/sqlite_schema.h"

namespace chatd::ceiling {
using store::sqlite::bind_text;
using store::sqlite::exec_or_throw;
using store::sqlite::open_database;
using store::sqlite::prepare_or_throw;
using store::sqlite::Statement;
using store::sqlite::StatementReset;

namespace {

// chatd's defaults (SqliteOptions): the checkpoint thread copies new WAL pages
// after this many, and past kWalLimitPages makes the WAL start over.
constexpr int kCheckpointPages = 1000;
constexpr int kWalLimitPages = 16'000;

/// Steps a statement that returns no rows, and resets it.
bool run(const Statement& statement) {
  const int rc = sqlite3_step(statement.get());
  sqlite3_reset(statement.get());
  return rc == SQLITE_DONE;
}

}  // namespace

// chatd's own connection set-up (store/sqlite/sqlite_handle.cpp: open flags,
// busy handler) and schema (store/sqlite/sqlite_schema.h), so that the writes
// cost what chatd's do.
SqliteLog::SqliteLog(const std::string& path)
    : db_(open_database(path)), checkpoint_db_(open_database(path)) {
  sqlite3* db = db_.get();
  exec_or_throw(db, "PRAGMA journal_mode=WAL");
  exec_or_throw(db, "PRAGMA synchronous=NORMAL");
  exec_or_throw(db, "PRAGMA journal_size_limit=67108864");
  exec_or_throw(db, store::sqlite::kSchema);
  exec_or_throw(db, store::sqlite::kOutboxSchema);
  begin_ = prepare_or_throw(db, "BEGIN IMMEDIATE");
  commit_ = prepare_or_throw(db, "COMMIT");
  rollback_ = prepare_or_throw(db, "ROLLBACK");
  select_chat_ = prepare_or_throw(db, "SELECT id, last_seq FROM chats WHERE chat_key = ?");
  insert_chat_ = prepare_or_throw(db,
                                  "INSERT INTO chats (chat_key, user_a, user_b, last_seq, "
                                  "last_activity_ms) VALUES (?, ?, ?, 0, ?)");
  insert_message_ = prepare_or_throw(db,
                                     "INSERT INTO messages (chat_id, seq, id, sender, text, ts_ms) "
                                     "VALUES (?, ?, ?, ?, ?, ?)");
  update_chat_ = prepare_or_throw(
      db, "UPDATE chats SET last_seq = ?, last_activity_ms = ?, hidden = 0 WHERE id = ?");
  exec_or_throw(checkpoint_db_.get(), "PRAGMA synchronous=NORMAL");
  // A connection learns that the file is in WAL mode when it first reads
  // it; until then a checkpoint through it does nothing.
  exec_or_throw(checkpoint_db_.get(), "PRAGMA journal_mode=WAL");
  // The hook replaces the automatic checkpoint inside the writer's commits.
  sqlite3_wal_hook(db, &SqliteLog::on_wal_commit, this);
  sqlite3_wal_autocheckpoint(checkpoint_db_.get(), 0);
  checkpointer_ = std::thread([this] { checkpoint_loop(); });
}

SqliteLog::~SqliteLog() {
  if (checkpointer_.joinable()) {
    {
      std::lock_guard lock(checkpoint_mutex_);
      stopping_ = true;
    }
    checkpoint_wanted_changed_.notify_one();
    checkpointer_.join();
  }
  // The statements go before their connection (members in reverse order);
  // the last connection to close checkpoints the WAL and removes it.
}

std::optional<SqliteLog::ChatRow> SqliteLog::find_chat(std::string_view chat_key) {
  sqlite3_stmt* select = select_chat_.get();
  StatementReset reset(select);
  bind_text(select, 1, chat_key);
  std::optional<ChatRow> row;
  if (sqlite3_step(select) == SQLITE_ROW) {
    row = ChatRow{sqlite3_column_int64(select, 0),
                  static_cast<std::uint64_t>(sqlite3_column_int64(select, 1))};
  }
  return row;
}

bool SqliteLog::begin() {
  return run(begin_);
}

std::int64_t SqliteLog::insert_chat(std::string_view chat_key, std::string_view user_a,
                                    std::string_view user_b, std::int64_t now_ms) {
  sqlite3_stmt* insert = insert_chat_.get();
  bind_text(insert, 1, chat_key);
  bind_text(insert, 2, user_a);
  bind_text(insert, 3, user_b);
  sqlite3_bind_int64(insert, 4, now_ms);
  return run(insert_chat_) ? sqlite3_last_insert_rowid(db_.get()) : 0;
}

bool SqliteLog::insert_message(std::int64_t chat_id, std::uint64_t seq, std::string_view id,
                               std::string_view sender, std::string_view text, std::int64_t ts_ms) {
  sqlite3_stmt* insert = insert_message_.get();
  sqlite3_bind_int64(insert, 1, chat_id);
  sqlite3_bind_int64(insert, 2, static_cast<sqlite3_int64>(seq));
  bind_text(insert, 3, id);
  bind_text(insert, 4, sender);
  bind_text(insert, 5, text);
  sqlite3_bind_int64(insert, 6, ts_ms);
  return run(insert_message_);
}

bool SqliteLog::update_chat(std::int64_t chat_id, std::uint64_t last_seq, std::int64_t now_ms) {
  sqlite3_stmt* update = update_chat_.get();
  sqlite3_bind_int64(update, 1, static_cast<sqlite3_int64>(last_seq));
  sqlite3_bind_int64(update, 2, now_ms);
  sqlite3_bind_int64(update, 3, chat_id);
  return run(update_chat_);
}

bool SqliteLog::commit() {
  return run(commit_);
}

void SqliteLog::rollback() {
  run(rollback_);
}

// Runs inside the writer's commit; `pages` is the WAL's length, which starts
// over from 0 after a complete checkpoint.
int SqliteLog::on_wal_commit(void* self, sqlite3* /*db*/, const char* /*name*/, int pages) {
  auto* log = static_cast<SqliteLog*>(self);
  {
    std::lock_guard lock(log->checkpoint_mutex_);
    if (pages < log->wal_pages_checkpointed_) log->wal_pages_checkpointed_ = 0;
    if (log->checkpoint_wanted_ || pages - log->wal_pages_checkpointed_ < kCheckpointPages) {
      return SQLITE_OK;
    }
    log->checkpoint_wanted_ = true;
  }
  log->checkpoint_wanted_changed_.notify_one();
  return SQLITE_OK;
}

// As chatd: a PASSIVE checkpoint never blocks the writer; past kWalLimitPages
// a RESTART one holds it for the rest and makes the WAL start over.
void SqliteLog::checkpoint_loop() {
  std::unique_lock lock(checkpoint_mutex_);
  while (true) {
    checkpoint_wanted_changed_.wait(lock, [this] { return checkpoint_wanted_ || stopping_; });
    if (stopping_) return;
    lock.unlock();
    int wal_pages = 0;
    int copied_pages = 0;
    int rc = sqlite3_wal_checkpoint_v2(checkpoint_db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                       &wal_pages, &copied_pages);
    if (rc == SQLITE_OK && wal_pages > kWalLimitPages) {
      rc = sqlite3_wal_checkpoint_v2(checkpoint_db_.get(), nullptr, SQLITE_CHECKPOINT_RESTART,
                                     &wal_pages, &copied_pages);
      if (rc == SQLITE_OK) wal_pages = 0;
    }
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      std::fprintf(stderr, "chatd_ceiling: checkpoint failed: %s\n",
                   sqlite3_errmsg(checkpoint_db_.get()));
    }
    lock.lock();
    checkpoint_wanted_ = false;
    wal_pages_checkpointed_ = std::max(0, wal_pages);
  }
}

}  // namespace chatd::ceiling
