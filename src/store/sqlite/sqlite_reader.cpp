#include "store/sqlite/sqlite_reader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

namespace chatd::store::sqlite {

std::shared_ptr<chat::Message> read_message(sqlite3_stmt* row, const chat::ChatKey& chat) {
  auto message = std::make_shared<chat::Message>(chat);
  message->seq = static_cast<std::uint64_t>(sqlite3_column_int64(row, 0));
  message->id = column_text(row, 1);
  message->sender = column_text(row, 2);
  message->text = column_text(row, 3);
  message->timestamp_ms = sqlite3_column_int64(row, 4);
  message->client_id = column_text(row, 5);
  message->kind = static_cast<chat::EntryKind>(sqlite3_column_int(row, 6));
  message->target = static_cast<std::uint64_t>(sqlite3_column_int64(row, 7));
  message->edited_ms = sqlite3_column_int64(row, 8);
  message->deleted = sqlite3_column_int(row, 9) != 0;
  message->target_id = column_text(row, 10);
  return message;
}

SqliteReader::SqliteReader(sqlite3* db, bool read_hooks)
    : db_(db),
      read_hooks_(read_hooks),
      newest_(prepare_or_throw(
          db, "SELECT " + std::string(kMessageColumns) +
                  " FROM messages WHERE chat_id = (SELECT id FROM chats WHERE chat_key = ?1)"
                  " AND seq > ?2 AND seq < ?3 AND (?5 = 0 OR kind = 0)"
                  " AND (?6 = 0 OR deleted = 0) ORDER BY seq DESC LIMIT ?4")),
      oldest_(prepare_or_throw(
          db, "SELECT " + std::string(kMessageColumns) +
                  " FROM messages WHERE chat_id = (SELECT id FROM chats WHERE chat_key = ?1)"
                  " AND seq > ?2 AND seq < ?3 AND (?5 = 0 OR kind = 0)"
                  " AND (?6 = 0 OR deleted = 0) ORDER BY seq ASC LIMIT ?4")),
      // A receipt only moves forward; with read hooks (?4 = the seq) moving
      // it also keeps its event to send (every SET sees the row before it).
      upsert_read_(prepare_or_throw(
          db,
          "INSERT INTO reads (chat_key, user, seq, hook_seq, hook_ms) VALUES (?1, ?2, ?3, ?4, ?5)"
          " ON CONFLICT (chat_key, user) DO UPDATE SET seq = max(seq, excluded.seq),"
          " hook_seq = CASE WHEN excluded.seq > seq AND excluded.hook_seq != 0"
          " THEN excluded.hook_seq ELSE hook_seq END,"
          " hook_ms = CASE WHEN excluded.seq > seq AND excluded.hook_seq != 0"
          " THEN excluded.hook_ms ELSE hook_ms END")),
      select_reads_(prepare_or_throw(db, "SELECT user, seq FROM reads WHERE chat_key = ?")),
      select_chat_state_(prepare_or_throw(
          db,
          "SELECT blocks, (SELECT seq FROM messages WHERE chat_id = chats.id ORDER BY seq"
          " LIMIT 1), last_seq FROM chats WHERE chat_key = ?")),
      // hidden: bit 1 for user_a, 2 for user_b (an erased user's list).
      select_chats_(
          prepare_or_throw(db,
                           "SELECT id, chat_key, last_seq, (SELECT seq FROM reads"
                           " WHERE reads.chat_key = chats.chat_key AND reads.user = ?1) FROM chats"
                           " WHERE (user_a = ?1 OR user_b = ?1) AND last_seq > 0"
                           " AND (hidden & (CASE WHEN user_a = ?1 THEN 1 ELSE 2 END)) = 0"
                           " ORDER BY last_activity_ms DESC, id DESC LIMIT ?2")),
      select_last_message_(prepare_or_throw(
          db, "SELECT " + std::string(kMessageColumns) +
                  " FROM messages WHERE chat_id = ? AND kind = 0 ORDER BY seq DESC LIMIT 1")),
      count_unread_(prepare_or_throw(db,
                                     "SELECT count(*) FROM messages WHERE chat_id = ? AND seq > ?"
                                     " AND sender <> ? AND kind = 0 AND deleted = 0")),
      // blocks: bit 1 when user_a blocks user_b, 2 when user_b blocks user_a.
      select_blocks_(prepare_or_throw(
          db,
          "SELECT CASE WHEN user_a = ?1 THEN user_b ELSE user_a END AS other FROM chats"
          " WHERE (user_a = ?1 AND blocks & 1) OR (user_b = ?1 AND blocks & 2)"
          " ORDER BY other")) {}

HistoryPage SqliteReader::history(const chat::ChatKey& chat, const HistoryQuery& query) {
  sqlite3_stmt* select = query.oldest_first ? oldest_.get() : newest_.get();
  StatementReset reset(select);
  const std::uint64_t before =
      query.before_seq == 0 ? std::numeric_limits<std::int64_t>::max() : query.before_seq;
  bind_text(select, 1, chat.str());
  sqlite3_bind_int64(select, 2, static_cast<sqlite3_int64>(query.after_seq));
  sqlite3_bind_int64(select, 3, static_cast<sqlite3_int64>(before));
  // One row more than asked tells whether there is more.
  sqlite3_bind_int64(select, 4, static_cast<sqlite3_int64>(query.limit) + 1);
  sqlite3_bind_int(select, 5, query.messages_only ? 1 : 0);
  sqlite3_bind_int(select, 6, query.skip_deleted ? 1 : 0);
  HistoryPage page;
  PageFill fill(query, page);
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
    if (!fill.add(read_message(select, chat))) break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    spdlog::error("sqlite: cannot read history of chat {}: {}", chat.str(), sqlite3_errstr(rc));
    return HistoryPage{StoreError::unavailable, {}, false};
  }
  if (!query.oldest_first) std::reverse(page.messages.begin(), page.messages.end());
  return page;
}

// A receipt is one autocommitted row, written from a reader connection: the
// group-commit writer waits at most that long for it (busy timeout).
ReadMarks SqliteReader::mark_read(const chat::ChatKey& chat, const std::string& user,
                                  std::uint64_t seq) {
  if (seq != 0) {
    sqlite3_stmt* upsert = upsert_read_.get();
    StatementReset reset(upsert);
    bind_text(upsert, 1, chat.str());
    bind_text(upsert, 2, user);
    sqlite3_bind_int64(upsert, 3, static_cast<sqlite3_int64>(seq));
    sqlite3_bind_int64(upsert, 4, read_hooks_ ? static_cast<sqlite3_int64>(seq) : 0);
    sqlite3_bind_int64(upsert, 5, read_hooks_ ? chat::now_ms() : 0);
    if (sqlite3_step(upsert) != SQLITE_DONE) {
      spdlog::error("sqlite: cannot store a read receipt in chat {}: {}", chat.str(),
                    sqlite3_errmsg(db_));
      return ReadMarks{StoreError::unavailable};
    }
  }
  ReadMarks marks;
  sqlite3_stmt* select = select_reads_.get();
  StatementReset reset(select);
  bind_text(select, 1, chat.str());
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
    const auto read_seq = static_cast<std::uint64_t>(sqlite3_column_int64(select, 1));
    (column_text(select, 0) == chat.first() ? marks.first : marks.second) = read_seq;
  }
  if (rc != SQLITE_DONE) {
    spdlog::error("sqlite: cannot read the receipts of chat {}: {}", chat.str(),
                  sqlite3_errmsg(db_));
    return ReadMarks{StoreError::unavailable};
  }
  sqlite3_stmt* state = select_chat_state_.get();
  StatementReset reset_state(state);
  bind_text(state, 1, chat.str());
  rc = sqlite3_step(state);
  if (rc == SQLITE_ROW) {
    const int blocks = sqlite3_column_int(state, 0);
    marks.first_blocks = (blocks & 1) != 0;
    marks.second_blocks = (blocks & 2) != 0;
    marks.first_seq = static_cast<std::uint64_t>(sqlite3_column_int64(state, 1));
    marks.last_seq = static_cast<std::uint64_t>(sqlite3_column_int64(state, 2));
  } else if (rc != SQLITE_DONE) {
    spdlog::error("sqlite: cannot read chat {}: {}", chat.str(), sqlite3_errmsg(db_));
    return ReadMarks{StoreError::unavailable};
  }
  return marks;
}

ConversationList SqliteReader::conversations(const std::string& user, std::size_t limit) {
  const auto failed = [&] {
    spdlog::error("sqlite: cannot list the conversations of {}: {}", user, sqlite3_errmsg(db_));
    return ConversationList{StoreError::unavailable, {}};
  };
  struct Row {
    sqlite3_int64 id;
    chat::ChatKey chat;
    std::uint64_t last_seq;
    std::uint64_t read_seq;
  };
  std::vector<Row> rows;
  {
    sqlite3_stmt* select = select_chats_.get();
    StatementReset reset(select);
    bind_text(select, 1, user);
    sqlite3_bind_int64(select, 2, static_cast<sqlite3_int64>(limit));
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
      auto chat = chat::ChatKey::parse(column_text(select, 1));
      if (!chat) continue;
      rows.push_back(Row{sqlite3_column_int64(select, 0), std::move(*chat),
                         static_cast<std::uint64_t>(sqlite3_column_int64(select, 2)),
                         static_cast<std::uint64_t>(sqlite3_column_int64(select, 3))});
    }
    if (rc != SQLITE_DONE) return failed();
  }
  ConversationList result;
  for (auto& row : rows) {
    Conversation conversation{row.chat, nullptr, row.read_seq, 0};
    {
      // The newest message, not a change; a chat with changes only (a block)
      // is no conversation.
      sqlite3_stmt* select = select_last_message_.get();
      StatementReset reset(select);
      sqlite3_bind_int64(select, 1, row.id);
      const int rc = sqlite3_step(select);
      if (rc == SQLITE_DONE) continue;
      if (rc != SQLITE_ROW) return failed();
      conversation.last = read_message(select, row.chat);
    }
    {
      sqlite3_stmt* count = count_unread_.get();
      StatementReset reset(count);
      sqlite3_bind_int64(count, 1, row.id);
      sqlite3_bind_int64(count, 2, static_cast<sqlite3_int64>(row.read_seq));
      bind_text(count, 3, user);
      if (sqlite3_step(count) != SQLITE_ROW) return failed();
      conversation.unread = static_cast<std::uint64_t>(sqlite3_column_int64(count, 0));
    }
    result.conversations.push_back(std::move(conversation));
  }
  return result;
}

BlockList SqliteReader::blocks(const std::string& user) {
  BlockList list;
  sqlite3_stmt* select = select_blocks_.get();
  StatementReset reset(select);
  bind_text(select, 1, user);
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(select)) == SQLITE_ROW) list.users.push_back(column_text(select, 0));
  if (rc != SQLITE_DONE) {
    spdlog::error("sqlite: cannot list the blocks of {}: {}", user, sqlite3_errmsg(db_));
    return BlockList{StoreError::unavailable, {}};
  }
  return list;
}

}  // namespace chatd::store::sqlite
