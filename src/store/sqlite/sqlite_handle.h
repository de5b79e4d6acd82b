#pragma once

#include <sqlite3.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace chatd::store::sqlite {

struct DatabaseCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StatementFinalizer {
  void operator()(sqlite3_stmt* statement) const { sqlite3_finalize(statement); }
};

using Database = std::unique_ptr<sqlite3, DatabaseCloser>;
using Statement = std::unique_ptr<sqlite3_stmt, StatementFinalizer>;

/// Start-up failures (cannot open, cannot create the schema) throw this; the
/// message names the file and SQLite's reason. The message path never throws.
class SqliteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

Database open_database(const std::string& path);
void exec_or_throw(sqlite3* db, const char* sql);
Statement prepare_or_throw(sqlite3* db, std::string_view sql);

/// Resets a statement after use so it can be bound again and holds no lock.
class StatementReset {
 public:
  explicit StatementReset(sqlite3_stmt* statement) : statement_(statement) {}
  ~StatementReset() {
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
  }
  StatementReset(const StatementReset&) = delete;
  StatementReset& operator=(const StatementReset&) = delete;

 private:
  sqlite3_stmt* statement_;
};

inline int bind_text(sqlite3_stmt* statement, int index, std::string_view text) {
  return sqlite3_bind_text(statement, index, text.data(), static_cast<int>(text.size()),
                           SQLITE_STATIC);
}

inline std::string column_text(sqlite3_stmt* statement, int index) {
  const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(statement, index));
  return data ? std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(statement, index)))
              : std::string();
}

}  // namespace chatd::store::sqlite
