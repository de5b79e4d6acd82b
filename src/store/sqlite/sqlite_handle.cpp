#include "store/sqlite/sqlite_handle.h"

#include <chrono>
#include <thread>

namespace chatd::store::sqlite {
namespace {

constexpr std::chrono::milliseconds kBusyTimeout{5000};
constexpr std::chrono::microseconds kBusyPoll{100};

// Waits for another connection's write lock (a receipt, a purge step, a
// checkpoint) in steps of 100 µs, up to 5 s. SQLite's own busy timeout
// sleeps 1, 2, 5, 10, 15, 20, 25 ms ... between tries, so a writer that found
// the lock taken for 3 ms waited 8: a purge of a large chat, done in short
// transactions, showed as a stall of every chat's commits.
int wait_for_lock(void* /*unused*/, int tries) {
  thread_local std::chrono::steady_clock::time_point since;
  const auto now = std::chrono::steady_clock::now();
  if (tries == 0) since = now;
  if (now - since >= kBusyTimeout) return 0;
  std::this_thread::sleep_for(kBusyPoll);
  return 1;
}

}  // namespace

Database open_database(const std::string& path) {
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  Database db(raw);
  if (rc != SQLITE_OK) {
    throw SqliteError("cannot open SQLite database '" + path +
                      "': " + (raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  // Another connection's checkpoint, receipt or purge step can briefly
  // hold the lock.
  sqlite3_busy_handler(raw, &wait_for_lock, nullptr);
  return db;
}

void exec_or_throw(sqlite3* db, const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    std::string message = error ? error : sqlite3_errmsg(db);
    sqlite3_free(error);
    throw SqliteError("SQLite: " + message + " (in: " + std::string(sql).substr(0, 80) + ")");
  }
}

Statement prepare_or_throw(sqlite3* db, std::string_view sql) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                         &raw, nullptr) != SQLITE_OK) {
    throw SqliteError("SQLite cannot prepare statement: " + std::string(sqlite3_errmsg(db)));
  }
  return Statement(raw);
}

}  // namespace chatd::store::sqlite
