#pragma once

#include "store/backend.h"
#include "store/sqlite/sqlite_handle.h"

namespace chatd::store::sqlite {

/// The columns read_message() reads, in its order.
inline constexpr std::string_view kMessageColumns =
    "seq, id, sender, text, ts_ms, client_id, kind, target, edited_ms, deleted, target_id";

/// The message in the current row of a statement that selects kMessageColumns.
std::shared_ptr<chat::Message> read_message(sqlite3_stmt* row, const chat::ChatKey& chat);

/// History, receipts and conversation lists, on one reader thread's own
/// connection (WAL lets it read while the writer commits).
class SqliteReader final : public Reader {
 public:
  /// Prepares the statements; throws SqliteError when the schema is wrong.
  /// `read_hooks`: a receipt that moves forward is kept as a message.read event.
  SqliteReader(sqlite3* db, bool read_hooks);

  // Reader
  HistoryPage history(const chat::ChatKey& chat, const HistoryQuery& query) override;
  ReadMarks mark_read(const chat::ChatKey& chat, const std::string& user,
                      std::uint64_t seq) override;
  ConversationList conversations(const std::string& user, std::size_t limit) override;
  BlockList blocks(const std::string& user) override;

 private:
  sqlite3* db_;
  const bool read_hooks_;
  Statement newest_, oldest_, upsert_read_, select_reads_, select_chat_state_, select_chats_,
      select_last_message_, count_unread_, select_blocks_;
};

}  // namespace chatd::store::sqlite
