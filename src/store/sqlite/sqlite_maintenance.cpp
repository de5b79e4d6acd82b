#include "store/sqlite/sqlite_maintenance.h"

#include <spdlog/spdlog.h>

#include "store/sqlite/sqlite_reader.h"

namespace chatd::store::sqlite {
namespace {

/// Chats a purge step visits at most, so that a step over many chats with
/// nothing to remove still ends soon.
constexpr int kChatsPerPurgeStep = 256;

}  // namespace

SqliteMaintenance::SqliteMaintenance(Database db)
    : db_(std::move(db)),
      begin_(prepare_or_throw(db_.get(), "BEGIN IMMEDIATE")),
      commit_(prepare_or_throw(db_.get(), "COMMIT")),
      rollback_(prepare_or_throw(db_.get(), "ROLLBACK")),
      next_chats_(
          prepare_or_throw(db_.get(), "SELECT id FROM chats WHERE id > ? ORDER BY id LIMIT ?")),
      // A chat's entries are in time order by seq: its oldest `?3` rows that
      // are older than the cut-off go (a row newer than it among them stays).
      purge_chat_(prepare_or_throw(db_.get(),
                                   "DELETE FROM messages WHERE chat_id = ?1 AND seq IN (SELECT seq"
                                   " FROM messages WHERE chat_id = ?1 ORDER BY seq LIMIT ?3)"
                                   " AND ts_ms < ?2")),
      chats_of_(prepare_or_throw(db_.get(),
                                 "SELECT chat_key FROM chats WHERE (user_a = ?1 OR user_b = ?1)"
                                 " AND chat_key > ?2 ORDER BY chat_key LIMIT ?3")),
      messages_(prepare_or_throw(
          db_.get(), "SELECT " + std::string(kMessageColumns) +
                         " FROM messages WHERE chat_id = (SELECT id FROM chats WHERE chat_key = ?1)"
                         " AND seq > ?2 AND kind = 0 ORDER BY seq LIMIT ?3")),
      // The user's messages become tombstones; their edits lose the text
      // they carried.
      erase_messages_(prepare_or_throw(
          db_.get(),
          "UPDATE messages SET text = '', deleted = 1 WHERE chat_id = (SELECT id FROM chats"
          " WHERE chat_key = ?1) AND seq IN (SELECT seq FROM messages WHERE chat_id = (SELECT"
          " id FROM chats WHERE chat_key = ?1) AND sender = ?2 AND kind = 0 AND deleted = 0"
          " LIMIT ?3)")),
      erase_edits_(prepare_or_throw(
          db_.get(),
          "UPDATE messages SET text = '' WHERE chat_id = (SELECT id FROM chats WHERE chat_key ="
          " ?1) AND seq IN (SELECT seq FROM messages WHERE chat_id = (SELECT id FROM chats"
          " WHERE chat_key = ?1) AND sender = ?2 AND kind = 1 AND text != '' LIMIT ?3)")),
      forget_reads_(prepare_or_throw(db_.get(), "DELETE FROM reads WHERE user = ?")),
      hide_chats_(prepare_or_throw(
          db_.get(),
          "UPDATE chats SET hidden = hidden | (CASE WHEN user_a = ?1 THEN 1 ELSE 2 END)"
          " WHERE user_a = ?1 OR user_b = ?1")) {}

void SqliteMaintenance::fail(const char* what) const {
  throw MaintenanceError(std::string("sqlite: cannot ") + what + ": " + sqlite3_errmsg(db_.get()));
}

PurgeStep SqliteMaintenance::purge(std::int64_t before_ms, std::size_t max_rows) {
  std::vector<sqlite3_int64> chats;
  {
    sqlite3_stmt* next = next_chats_.get();
    StatementReset reset(next);
    sqlite3_bind_int64(next, 1, purge_after_chat_);
    sqlite3_bind_int(next, 2, kChatsPerPurgeStep);
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(next)) == SQLITE_ROW) chats.push_back(sqlite3_column_int64(next, 0));
    if (rc != SQLITE_DONE) fail("list chats to purge");
  }
  PurgeStep step;
  if (chats.empty()) {
    purge_after_chat_ = 0;
    step.done = true;
    return step;
  }
  {
    StatementReset reset(begin_.get());
    if (sqlite3_step(begin_.get()) != SQLITE_DONE) fail("begin a purge");
  }
  for (const sqlite3_int64 chat : chats) {
    const std::size_t left = max_rows - step.removed;
    sqlite3_stmt* purge = purge_chat_.get();
    StatementReset reset(purge);
    sqlite3_bind_int64(purge, 1, chat);
    sqlite3_bind_int64(purge, 2, before_ms);
    sqlite3_bind_int64(purge, 3, static_cast<sqlite3_int64>(left));
    if (sqlite3_step(purge) != SQLITE_DONE) {
      const std::string error = sqlite3_errmsg(db_.get());
      StatementReset undo(rollback_.get());
      sqlite3_step(rollback_.get());
      throw MaintenanceError("sqlite: cannot purge a chat: " + error);
    }
    const auto removed = static_cast<std::size_t>(sqlite3_changes(db_.get()));
    step.removed += removed;
    // A chat with more to remove than this step's rows is visited again.
    if (removed == left) break;
    purge_after_chat_ = chat;
  }
  StatementReset reset(commit_.get());
  if (sqlite3_step(commit_.get()) != SQLITE_DONE) {
    const std::string error = sqlite3_errmsg(db_.get());
    StatementReset undo(rollback_.get());
    sqlite3_step(rollback_.get());
    throw MaintenanceError("sqlite: cannot commit a purge: " + error);
  }
  return step;
}

std::vector<chat::ChatKey> SqliteMaintenance::chats_of(const std::string& user,
                                                       const std::string& after,
                                                       std::size_t limit) {
  std::vector<chat::ChatKey> chats;
  sqlite3_stmt* select = chats_of_.get();
  StatementReset reset(select);
  bind_text(select, 1, user);
  bind_text(select, 2, after);
  sqlite3_bind_int64(select, 3, static_cast<sqlite3_int64>(limit));
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
    if (auto chat = chat::ChatKey::parse(column_text(select, 0))) chats.push_back(std::move(*chat));
  }
  if (rc != SQLITE_DONE) fail("list a user's chats");
  return chats;
}

std::vector<chat::MessagePtr> SqliteMaintenance::messages(const chat::ChatKey& chat,
                                                          std::uint64_t after_seq,
                                                          std::size_t limit) {
  std::vector<chat::MessagePtr> messages;
  sqlite3_stmt* select = messages_.get();
  StatementReset reset(select);
  bind_text(select, 1, chat.str());
  sqlite3_bind_int64(select, 2, static_cast<sqlite3_int64>(after_seq));
  sqlite3_bind_int64(select, 3, static_cast<sqlite3_int64>(limit));
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(select)) == SQLITE_ROW) messages.push_back(read_message(select, chat));
  if (rc != SQLITE_DONE) fail("read a chat's messages");
  return messages;
}

EraseStep SqliteMaintenance::erase(const chat::ChatKey& chat, const std::string& user,
                                   std::size_t max_rows) {
  const auto run = [&](const Statement& statement, std::size_t rows) -> std::size_t {
    if (rows == 0) return 0;
    sqlite3_stmt* erase = statement.get();
    StatementReset reset(erase);
    bind_text(erase, 1, chat.str());
    bind_text(erase, 2, user);
    sqlite3_bind_int64(erase, 3, static_cast<sqlite3_int64>(rows));
    if (sqlite3_step(erase) != SQLITE_DONE) fail("erase a user's messages");
    return static_cast<std::size_t>(sqlite3_changes(db_.get()));
  };
  EraseStep step;
  step.messages = run(erase_messages_, max_rows);
  step.edits = run(erase_edits_, max_rows - step.messages);
  return step;
}

std::size_t SqliteMaintenance::forget_user(const std::string& user) {
  std::size_t receipts = 0;
  {
    sqlite3_stmt* forget = forget_reads_.get();
    StatementReset reset(forget);
    bind_text(forget, 1, user);
    if (sqlite3_step(forget) != SQLITE_DONE) fail("remove a user's receipts");
    receipts = static_cast<std::size_t>(sqlite3_changes(db_.get()));
  }
  sqlite3_stmt* hide = hide_chats_.get();
  StatementReset reset(hide);
  bind_text(hide, 1, user);
  if (sqlite3_step(hide) != SQLITE_DONE) fail("hide a user's conversations");
  return receipts;
}

}  // namespace chatd::store::sqlite
