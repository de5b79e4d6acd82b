#include "store/sqlite/sqlite_handle.h"

namespace chatd::store::sqlite {

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
  // Another connection's checkpoint can briefly lock the file.
  sqlite3_busy_timeout(raw, 5000);
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
