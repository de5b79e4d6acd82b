#pragma once

#include "store/maintenance.h"
#include "store/sqlite/sqlite_handle.h"

namespace chatd::store::sqlite {

/// Retention, erasure and export on a connection of their own. Each call is
/// one short transaction (autocommitted statements, or BEGIN IMMEDIATE for a
/// purge step), so the group-commit writer waits at most that long for the
/// database's write lock.
class SqliteMaintenance final : public Maintenance {
 public:
  /// Prepares the statements; throws SqliteError when the schema is wrong.
  explicit SqliteMaintenance(Database db);

  PurgeStep purge(std::int64_t before_ms, std::size_t max_rows) override;
  std::vector<chat::ChatKey> chats_of(const std::string& user, const std::string& after,
                                      std::size_t limit) override;
  std::vector<chat::MessagePtr> messages(const chat::ChatKey& chat, std::uint64_t after_seq,
                                         std::size_t limit) override;
  EraseStep erase(const chat::ChatKey& chat, const std::string& user,
                  std::size_t max_rows) override;
  std::size_t forget_user(const std::string& user) override;

 private:
  [[noreturn]] void fail(const char* what) const;

  Database db_;
  Statement begin_, commit_, rollback_, next_chats_, purge_chat_, chats_of_, messages_,
      erase_messages_, erase_edits_, forget_reads_, hide_chats_;
  /// The purge pass's place: chats with a greater id are visited next.
  sqlite3_int64 purge_after_chat_ = 0;
};

}  // namespace chatd::store::sqlite
