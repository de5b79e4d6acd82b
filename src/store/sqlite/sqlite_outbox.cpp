#include "store/sqlite/sqlite_outbox.h"

#include <spdlog/spdlog.h>

#include "store/sqlite/sqlite_reader.h"

namespace chatd::store::sqlite {
namespace {

constexpr const char* kFailedColumns =
    "id, type, chat_key, seq, bit, reader, attempts, last_error, failed_ms, body";

int step_once(const Statement& statement) {
  StatementReset reset(statement.get());
  return sqlite3_step(statement.get());
}

}  // namespace

SqliteOutbox::SqliteOutbox(Database db)
    : db_(std::move(db)),
      begin_(prepare_or_throw(db_.get(), "BEGIN IMMEDIATE")),
      commit_(prepare_or_throw(db_.get(), "COMMIT")),
      rollback_(prepare_or_throw(db_.get(), "ROLLBACK")),
      next_chat_(prepare_or_throw(db_.get(),
                                  "SELECT m.chat_id, c.chat_key FROM messages m INDEXED BY "
                                  "messages_with_hooks JOIN chats c ON "
                                  "c.id = m.chat_id WHERE m.hooks != 0 AND m.chat_id > ? "
                                  "ORDER BY m.chat_id LIMIT 1")),
      pending_(prepare_or_throw(
          db_.get(),
          // read_message()'s columns (kMessageColumns), then the events and the chat.
          "SELECT m.seq, m.id, m.sender, m.text, m.ts_ms, m.client_id, m.kind, m.target, "
          "m.edited_ms, m.deleted, m.target_id, m.hooks, m.chat_id, c.chat_key "
          "FROM messages m INDEXED BY messages_with_hooks "
          "JOIN chats c ON c.id = m.chat_id "
          "WHERE m.chat_id = ? AND m.hooks != 0 AND m.seq > ? ORDER BY m.seq LIMIT ?")),
      clear_bit_(prepare_or_throw(db_.get(),
                                  "UPDATE messages SET hooks = hooks & ~?3 WHERE chat_id = "
                                  "(SELECT id FROM chats WHERE chat_key = ?1) AND seq = ?2")),
      set_bit_(prepare_or_throw(db_.get(),
                                "UPDATE messages SET hooks = hooks | ?3 WHERE chat_id = "
                                "(SELECT id FROM chats WHERE chat_key = ?1) AND seq = ?2")),
      pending_reads_(prepare_or_throw(
          db_.get(),
          "SELECT chat_key, user, hook_seq, hook_ms FROM reads INDEXED BY reads_with_hooks "
          "WHERE hook_seq != 0 AND chat_key > ? "
          "ORDER BY chat_key, user LIMIT ?")),
      clear_read_(prepare_or_throw(db_.get(),
                                   "UPDATE reads SET hook_seq = 0 WHERE chat_key = ?1 AND "
                                   "user = ?2 AND hook_seq = ?3")),
      set_read_(prepare_or_throw(db_.get(),
                                 "UPDATE reads SET hook_seq = ?3, hook_ms = ?4 WHERE chat_key = "
                                 "?1 AND user = ?2 AND hook_seq = 0")),
      insert_failed_(prepare_or_throw(db_.get(), std::string("INSERT OR REPLACE INTO "
                                                             "webhook_failed (") +
                                                     kFailedColumns +
                                                     ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")),
      list_failed_(prepare_or_throw(db_.get(), std::string("SELECT ") + kFailedColumns +
                                                   " FROM webhook_failed ORDER BY failed_ms, id "
                                                   "LIMIT ?")),
      find_failed_(prepare_or_throw(db_.get(), std::string("SELECT ") + kFailedColumns +
                                                   " FROM webhook_failed WHERE id = ?")),
      delete_failed_(prepare_or_throw(db_.get(), "DELETE FROM webhook_failed WHERE id = ?")),
      // INDEXED BY: the partial indexes are what keeps each of these as small
      // as the backlog; without it SQLite may pick the primary key and filter
      // every settled row of a chat (or of every receipt).
      backlog_(prepare_or_throw(db_.get(),
                                "SELECT count(*), min(ts_ms) FROM messages INDEXED BY "
                                "messages_with_hooks WHERE hooks != 0")),
      backlog_reads_(prepare_or_throw(db_.get(),
                                      "SELECT count(*), min(hook_ms) FROM reads INDEXED BY "
                                      "reads_with_hooks WHERE hook_seq != 0")),
      count_failed_(prepare_or_throw(db_.get(), "SELECT count(*) FROM webhook_failed")) {}

std::optional<std::vector<chat::MessagePtr>> SqliteOutbox::pending(std::size_t chats,
                                                                   std::size_t per_chat,
                                                                   const ReadFrom& after) {
  std::vector<chat::MessagePtr> messages;
  std::int64_t cursor = after_chat_id_;
  std::int64_t first = 0;  // the first chat of this call: met again, every chat was taken
  for (std::size_t taken = 0; taken < chats;) {
    std::int64_t chat_id = 0;
    std::optional<chat::ChatKey> key;
    {
      sqlite3_stmt* next = next_chat_.get();
      StatementReset reset(next);
      sqlite3_bind_int64(next, 1, cursor);
      const int rc = sqlite3_step(next);
      if (rc == SQLITE_ROW) {
        chat_id = sqlite3_column_int64(next, 0);
        key = chat::ChatKey::parse(column_text(next, 1));
      } else if (rc != SQLITE_DONE) {
        spdlog::error("sqlite: cannot read the webhook outbox: {}", sqlite3_errmsg(db_.get()));
        return std::nullopt;
      }
    }
    if (chat_id == 0) {  // past the last chat: start over, once
      if (cursor == 0) break;
      cursor = 0;
      continue;
    }
    if (chat_id == first) break;
    if (first == 0) first = chat_id;
    cursor = chat_id;
    const auto from = key ? after(*key) : std::nullopt;
    if (!from) continue;  // skipped: not counted as taken
    sqlite3_stmt* select = pending_.get();
    StatementReset reset(select);
    sqlite3_bind_int64(select, 1, chat_id);
    sqlite3_bind_int64(select, 2, static_cast<sqlite3_int64>(*from));
    sqlite3_bind_int64(select, 3, static_cast<sqlite3_int64>(per_chat));
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
      auto chat = chat::ChatKey::parse(column_text(select, 13));
      if (!chat) continue;  // not a key chatd made; never happens
      auto message = read_message(select, *chat);
      message->hooks = static_cast<std::uint8_t>(sqlite3_column_int(select, 11));
      messages.push_back(std::move(message));
    }
    if (rc != SQLITE_DONE) {
      spdlog::error("sqlite: cannot read the webhook outbox: {}", sqlite3_errmsg(db_.get()));
      return std::nullopt;
    }
    ++taken;
  }
  after_chat_id_ = cursor;
  return messages;
}

std::optional<std::vector<PendingRead>> SqliteOutbox::pending_reads(std::size_t limit) {
  std::vector<PendingRead> reads;
  sqlite3_stmt* select = pending_reads_.get();
  StatementReset reset(select);
  bind_text(select, 1, after_read_chat_);
  sqlite3_bind_int64(select, 2, static_cast<sqlite3_int64>(limit));
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
    auto chat = chat::ChatKey::parse(column_text(select, 0));
    if (!chat) continue;
    reads.push_back(PendingRead{std::move(*chat), column_text(select, 1),
                                static_cast<std::uint64_t>(sqlite3_column_int64(select, 2)),
                                sqlite3_column_int64(select, 3)});
  }
  if (rc != SQLITE_DONE) {
    spdlog::error("sqlite: cannot read the webhook outbox: {}", sqlite3_errmsg(db_.get()));
    return std::nullopt;
  }
  after_read_chat_ = reads.size() < limit ? std::string() : reads.back().chat.str();
  return reads;
}

bool SqliteOutbox::change_read(const Statement& statement, const chat::ChatKey& chat,
                               const std::string& reader, std::uint64_t seq) {
  sqlite3_stmt* update = statement.get();
  StatementReset reset(update);
  bind_text(update, 1, chat.str());
  bind_text(update, 2, reader);
  sqlite3_bind_int64(update, 3, static_cast<sqlite3_int64>(seq));
  if (sqlite3_bind_parameter_count(update) >= 4) {  // set_read_ stamps when it is pending again
    sqlite3_bind_int64(update, 4, chat::now_ms());
  }
  return sqlite3_step(update) == SQLITE_DONE;
}

bool SqliteOutbox::change_bit(const Statement& statement, const chat::ChatKey& chat,
                              std::uint64_t seq, std::uint8_t bit) {
  sqlite3_stmt* update = statement.get();
  StatementReset reset(update);
  bind_text(update, 1, chat.str());
  sqlite3_bind_int64(update, 2, static_cast<sqlite3_int64>(seq));
  sqlite3_bind_int(update, 3, bit);
  return sqlite3_step(update) == SQLITE_DONE;
}

template <typename Write>
bool SqliteOutbox::in_transaction(const char* what, Write write) {
  if (step_once(begin_) != SQLITE_DONE) {
    spdlog::error("sqlite: cannot begin to {}: {}", what, sqlite3_errmsg(db_.get()));
    return false;
  }
  if (write() && step_once(commit_) == SQLITE_DONE) return true;
  spdlog::error("sqlite: cannot {}: {}", what, sqlite3_errmsg(db_.get()));
  step_once(rollback_);
  return false;
}

bool SqliteOutbox::settle(std::span<const SettledHook> delivered,
                          std::span<const FailedEvent> failed) {
  return in_transaction("settle webhook events", [&] {
    for (const auto& hook : delivered) {
      const bool ok = hook.bit == kHookRead
                          ? change_read(clear_read_, hook.chat, hook.reader, hook.seq)
                          : change_bit(clear_bit_, hook.chat, hook.seq, hook.bit);
      if (!ok) return false;
    }
    for (const auto& event : failed) {
      sqlite3_stmt* insert = insert_failed_.get();
      StatementReset reset(insert);
      bind_text(insert, 1, event.id);
      bind_text(insert, 2, event.type);
      bind_text(insert, 3, event.chat.str());
      sqlite3_bind_int64(insert, 4, static_cast<sqlite3_int64>(event.seq));
      sqlite3_bind_int(insert, 5, event.bit);
      bind_text(insert, 6, event.reader);
      sqlite3_bind_int64(insert, 7, event.attempts);
      bind_text(insert, 8, event.last_error);
      sqlite3_bind_int64(insert, 9, event.failed_ms);
      bind_text(insert, 10, event.body);
      if (sqlite3_step(insert) != SQLITE_DONE) return false;
      const bool ok = event.bit == kHookRead
                          ? change_read(clear_read_, event.chat, event.reader, event.seq)
                          : change_bit(clear_bit_, event.chat, event.seq, event.bit);
      if (!ok) return false;
    }
    return true;
  });
}

namespace {

std::optional<FailedEvent> read_failed(sqlite3_stmt* row) {
  auto chat = chat::ChatKey::parse(column_text(row, 2));
  if (!chat) return std::nullopt;
  return FailedEvent{.id = column_text(row, 0),
                     .type = column_text(row, 1),
                     .chat = std::move(*chat),
                     .seq = static_cast<std::uint64_t>(sqlite3_column_int64(row, 3)),
                     .bit = static_cast<std::uint8_t>(sqlite3_column_int(row, 4)),
                     .reader = column_text(row, 5),
                     .attempts = static_cast<std::uint32_t>(sqlite3_column_int64(row, 6)),
                     .last_error = column_text(row, 7),
                     .failed_ms = sqlite3_column_int64(row, 8),
                     .body = column_text(row, 9)};
}

}  // namespace

std::optional<std::vector<FailedEvent>> SqliteOutbox::failed(std::size_t limit) {
  std::vector<FailedEvent> events;
  sqlite3_stmt* select = list_failed_.get();
  StatementReset reset(select);
  sqlite3_bind_int64(select, 1, static_cast<sqlite3_int64>(limit));
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
    if (auto event = read_failed(select)) events.push_back(std::move(*event));
  }
  if (rc != SQLITE_DONE) {
    spdlog::error("sqlite: cannot list failed webhook events: {}", sqlite3_errmsg(db_.get()));
    return std::nullopt;
  }
  return events;
}

std::optional<bool> SqliteOutbox::retry(const std::string& event_id) {
  bool found = false;
  const bool ok = in_transaction("retry a webhook event", [&] {
    std::optional<FailedEvent> event;
    {
      sqlite3_stmt* find = find_failed_.get();
      StatementReset reset(find);
      bind_text(find, 1, event_id);
      const int rc = sqlite3_step(find);
      if (rc == SQLITE_ROW) event = read_failed(find);
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) return false;
    }
    if (!event) return true;  // nothing to do: commit the empty transaction
    found = true;
    const bool pending_again = event->bit == kHookRead
                                   ? change_read(set_read_, event->chat, event->reader, event->seq)
                                   : change_bit(set_bit_, event->chat, event->seq, event->bit);
    if (!pending_again) return false;
    sqlite3_stmt* remove = delete_failed_.get();
    StatementReset reset(remove);
    bind_text(remove, 1, event_id);
    return sqlite3_step(remove) == SQLITE_DONE;
  });
  if (!ok) return std::nullopt;
  return found;
}

std::optional<Backlog> SqliteOutbox::backlog() {
  Backlog backlog;
  {
    sqlite3_stmt* select = backlog_.get();
    StatementReset reset(select);
    if (sqlite3_step(select) != SQLITE_ROW) return std::nullopt;
    backlog.events = static_cast<std::uint64_t>(sqlite3_column_int64(select, 0));
    backlog.oldest_ms = sqlite3_column_int64(select, 1);  // NULL (no row) reads as 0
  }
  {
    sqlite3_stmt* select = backlog_reads_.get();
    StatementReset reset(select);
    if (sqlite3_step(select) != SQLITE_ROW) return std::nullopt;
    backlog.events += static_cast<std::uint64_t>(sqlite3_column_int64(select, 0));
    const std::int64_t oldest_read = sqlite3_column_int64(select, 1);
    if (oldest_read != 0 && (backlog.oldest_ms == 0 || oldest_read < backlog.oldest_ms)) {
      backlog.oldest_ms = oldest_read;
    }
  }
  sqlite3_stmt* count = count_failed_.get();
  StatementReset reset(count);
  if (sqlite3_step(count) != SQLITE_ROW) return std::nullopt;
  backlog.failed = static_cast<std::uint64_t>(sqlite3_column_int64(count, 0));
  return backlog;
}

}  // namespace chatd::store::sqlite
