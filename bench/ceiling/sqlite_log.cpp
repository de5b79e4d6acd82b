// chatd_ceiling --mode persist: the message log in SQLite, written straight
// against the C API on purpose. chatd_ceiling is the floor chatd is measured
// against, so this store keeps chatd's schema, pragmas and checkpointing (the
// same costs per message) and leaves out everything else chatd's store does.
#include "ceiling/sqlite_log.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>

namespace chatd::ceiling {
namespace {

// chatd's `chats` and `messages` tables and their indexes, as in
// src/store/sqlite/sqlite_store.cpp (kSchema). Its `reads` table and webhook
// outbox are left out: nothing here writes them.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS chats (
  id               INTEGER PRIMARY KEY,
  chat_key         TEXT NOT NULL UNIQUE,
  user_a           TEXT NOT NULL,
  user_b           TEXT NOT NULL,
  last_seq         INTEGER NOT NULL,
  last_activity_ms INTEGER NOT NULL,
  blocks           INTEGER NOT NULL DEFAULT 0,
  hidden           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS chats_of_user_a ON chats (user_a);
CREATE INDEX IF NOT EXISTS chats_of_user_b ON chats (user_b);
CREATE TABLE IF NOT EXISTS messages (
  chat_id   INTEGER NOT NULL,
  seq       INTEGER NOT NULL,
  id        TEXT NOT NULL,
  sender    TEXT NOT NULL,
  text      TEXT NOT NULL,
  ts_ms     INTEGER NOT NULL,
  client_id TEXT,
  hooks     INTEGER NOT NULL DEFAULT 0,
  kind      INTEGER NOT NULL DEFAULT 0,
  target    INTEGER NOT NULL DEFAULT 0,
  edited_ms INTEGER NOT NULL DEFAULT 0,
  deleted   INTEGER NOT NULL DEFAULT 0,
  target_id TEXT,
  PRIMARY KEY (chat_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id
  ON messages (chat_id, sender, client_id) WHERE client_id IS NOT NULL;
)sql";

// chatd's defaults (SqliteOptions): the checkpoint thread copies new WAL pages
// after this many, and past kWalLimitPages makes the WAL start over.
constexpr int kCheckpointPages = 1000;
constexpr int kWalLimitPages = 16'000;

constexpr std::chrono::milliseconds kBusyTimeout{5000};
constexpr std::chrono::microseconds kBusyPoll{100};

// chatd's busy handler: waits for the other connection's lock in steps of
// 100 µs, up to 5 s.
int wait_for_lock(void* /*unused*/, int tries) {
  thread_local std::chrono::steady_clock::time_point since;
  const auto now = std::chrono::steady_clock::now();
  if (tries == 0) since = now;
  if (now - since >= kBusyTimeout) return 0;
  std::this_thread::sleep_for(kBusyPoll);
  return 1;
}

sqlite3* open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    const std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    throw std::runtime_error("cannot open SQLite database '" + path + "': " + message);
  }
  sqlite3_busy_handler(db, &wait_for_lock, nullptr);
  return db;
}

void exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string message = error != nullptr ? error : sqlite3_errmsg(db);
    sqlite3_free(error);
    throw std::runtime_error("SQLite: " + message);
  }
}

sqlite3_stmt* prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement, nullptr) !=
      SQLITE_OK) {
    throw std::runtime_error(std::string("SQLite cannot prepare statement: ") + sqlite3_errmsg(db));
  }
  return statement;
}

/// Steps a statement that returns no rows, and resets it.
bool run(sqlite3_stmt* statement) {
  const int rc = sqlite3_step(statement);
  sqlite3_reset(statement);
  return rc == SQLITE_DONE;
}

void bind(sqlite3_stmt* statement, int index, std::string_view text) {
  sqlite3_bind_text(statement, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

}  // namespace

SqliteLog::SqliteLog(const std::string& path) {
  try {
    db_ = open(path);
    exec(db_, "PRAGMA journal_mode=WAL");
    exec(db_, "PRAGMA synchronous=NORMAL");
    exec(db_, "PRAGMA journal_size_limit=67108864");
    exec(db_, kSchema);
    begin_ = prepare(db_, "BEGIN IMMEDIATE");
    commit_ = prepare(db_, "COMMIT");
    rollback_ = prepare(db_, "ROLLBACK");
    select_chat_ = prepare(db_, "SELECT id, last_seq FROM chats WHERE chat_key = ?");
    insert_chat_ = prepare(db_,
                           "INSERT INTO chats (chat_key, user_a, user_b, last_seq, "
                           "last_activity_ms) VALUES (?, ?, ?, 0, ?)");
    insert_message_ = prepare(db_,
                              "INSERT INTO messages (chat_id, seq, id, sender, text, ts_ms) "
                              "VALUES (?, ?, ?, ?, ?, ?)");
    update_chat_ = prepare(
        db_, "UPDATE chats SET last_seq = ?, last_activity_ms = ?, hidden = 0 WHERE id = ?");
    checkpoint_db_ = open(path);
    exec(checkpoint_db_, "PRAGMA synchronous=NORMAL");
    // A connection learns that the file is in WAL mode when it first reads
    // it; until then a checkpoint through it does nothing.
    exec(checkpoint_db_, "PRAGMA journal_mode=WAL");
  } catch (...) {
    close();
    throw;
  }
  // The hook replaces the automatic checkpoint inside the writer's commits.
  sqlite3_wal_hook(db_, &SqliteLog::on_wal_commit, this);
  sqlite3_wal_autocheckpoint(checkpoint_db_, 0);
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
  close();
}

void SqliteLog::close() {
  for (sqlite3_stmt** statement : {&begin_, &commit_, &rollback_, &select_chat_, &insert_chat_,
                                   &insert_message_, &update_chat_}) {
    sqlite3_finalize(*statement);
    *statement = nullptr;
  }
  sqlite3_close(checkpoint_db_);
  checkpoint_db_ = nullptr;
  // The last connection to close checkpoints the WAL and removes it.
  sqlite3_close(db_);
  db_ = nullptr;
}

std::optional<SqliteLog::ChatRow> SqliteLog::find_chat(std::string_view chat_key) {
  bind(select_chat_, 1, chat_key);
  std::optional<ChatRow> row;
  if (sqlite3_step(select_chat_) == SQLITE_ROW) {
    row = ChatRow{sqlite3_column_int64(select_chat_, 0),
                  static_cast<std::uint64_t>(sqlite3_column_int64(select_chat_, 1))};
  }
  sqlite3_reset(select_chat_);
  return row;
}

bool SqliteLog::begin() {
  return run(begin_);
}

std::int64_t SqliteLog::insert_chat(std::string_view chat_key, std::string_view user_a,
                                    std::string_view user_b, std::int64_t now_ms) {
  bind(insert_chat_, 1, chat_key);
  bind(insert_chat_, 2, user_a);
  bind(insert_chat_, 3, user_b);
  sqlite3_bind_int64(insert_chat_, 4, now_ms);
  return run(insert_chat_) ? sqlite3_last_insert_rowid(db_) : 0;
}

bool SqliteLog::insert_message(std::int64_t chat_id, std::uint64_t seq, std::string_view id,
                               std::string_view sender, std::string_view text, std::int64_t ts_ms) {
  sqlite3_bind_int64(insert_message_, 1, chat_id);
  sqlite3_bind_int64(insert_message_, 2, static_cast<sqlite3_int64>(seq));
  bind(insert_message_, 3, id);
  bind(insert_message_, 4, sender);
  bind(insert_message_, 5, text);
  sqlite3_bind_int64(insert_message_, 6, ts_ms);
  return run(insert_message_);
}

bool SqliteLog::update_chat(std::int64_t chat_id, std::uint64_t last_seq, std::int64_t now_ms) {
  sqlite3_bind_int64(update_chat_, 1, static_cast<sqlite3_int64>(last_seq));
  sqlite3_bind_int64(update_chat_, 2, now_ms);
  sqlite3_bind_int64(update_chat_, 3, chat_id);
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
    int rc = sqlite3_wal_checkpoint_v2(checkpoint_db_, nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                       &wal_pages, &copied_pages);
    if (rc == SQLITE_OK && wal_pages > kWalLimitPages) {
      rc = sqlite3_wal_checkpoint_v2(checkpoint_db_, nullptr, SQLITE_CHECKPOINT_RESTART, &wal_pages,
                                     &copied_pages);
      if (rc == SQLITE_OK) wal_pages = 0;
    }
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      std::fprintf(stderr, "chatd_ceiling: checkpoint failed: %s\n",
                   sqlite3_errmsg(checkpoint_db_));
    }
    lock.lock();
    checkpoint_wanted_ = false;
    wal_pages_checkpointed_ = std::max(0, wal_pages);
  }
}

}  // namespace chatd::ceiling
