// chatd_ceiling --mode persist: the message log in SQLite, with chatd's schema
// and settings, on the C API through chatd's own handles (store/sqlite/sqlite_handle.h
// and sqlite_schema.h, which need nothing but SQLite). Hand-written on purpose:
// chatd_ceiling is the floor chatd is measured against, so its store does the
// writes chatd's does (one transaction per batch, the chat row, each message,
// the chat's last_seq) and nothing else.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "store/sqlite/sqlite_handle.h"

namespace chatd::ceiling {

class SqliteLog {
 public:
  /// Opens (creating when missing) the database at `path`; throws
  /// std::runtime_error when it cannot.
  explicit SqliteLog(const std::string& path);
  ~SqliteLog();
  SqliteLog(const SqliteLog&) = delete;
  SqliteLog& operator=(const SqliteLog&) = delete;

  struct ChatRow {
    std::int64_t id = 0;
    std::uint64_t last_seq = 0;
  };
  std::optional<ChatRow> find_chat(std::string_view chat_key);

  // One batch: begin, its rows, commit (or rollback after a failure).
  bool begin();
  /// The new chat's id; 0 on failure.
  std::int64_t insert_chat(std::string_view chat_key, std::string_view user_a,
                           std::string_view user_b, std::int64_t now_ms);
  bool insert_message(std::int64_t chat_id, std::uint64_t seq, std::string_view id,
                      std::string_view sender, std::string_view text, std::int64_t ts_ms);
  bool update_chat(std::int64_t chat_id, std::uint64_t last_seq, std::int64_t now_ms);
  bool commit();
  void rollback();

  const char* error() const { return sqlite3_errmsg(db_.get()); }

 private:
  static int on_wal_commit(void* self, sqlite3* db, const char* name, int pages);
  void checkpoint_loop();

  store::sqlite::Database db_;
  store::sqlite::Database checkpoint_db_;
  store::sqlite::Statement begin_;
  store::sqlite::Statement commit_;
  store::sqlite::Statement rollback_;
  store::sqlite::Statement select_chat_;
  store::sqlite::Statement insert_chat_;
  store::sqlite::Statement insert_message_;
  store::sqlite::Statement update_chat_;

  // Checkpoints run on their own thread and connection, as in chatd: the
  // WAL hook asks for one after every kCheckpointPages new pages.
  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_wanted_changed_;
  bool checkpoint_wanted_ = false;
  bool stopping_ = false;
  int wal_pages_checkpointed_ = 0;
  std::thread checkpointer_;
};

}  // namespace chatd::ceiling
