#include "store/sqlite/sqlite_writer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "store/sqlite/sqlite_reader.h"

namespace chatd::store::sqlite {
namespace {

int step(const Statement& statement) {
  StatementReset reset(statement.get());
  return sqlite3_step(statement.get());
}

}  // namespace

SqliteWriter::SqliteWriter(sqlite3* db, std::atomic<bool>& ready, std::size_t max_cached_chats)
    : db_(db),
      ready_(ready),
      max_cached_chats_(std::max<std::size_t>(1, max_cached_chats)),
      begin_(prepare_or_throw(db, "BEGIN IMMEDIATE")),
      commit_(prepare_or_throw(db, "COMMIT")),
      rollback_(prepare_or_throw(db, "ROLLBACK")),
      select_chat_(
          prepare_or_throw(db, "SELECT id, last_seq, blocks FROM chats WHERE chat_key = ?")),
      insert_chat_(prepare_or_throw(db,
                                    "INSERT INTO chats (chat_key, user_a, user_b, last_seq, "
                                    "last_activity_ms) VALUES (?, ?, ?, 0, ?)")),
      update_chat_(
          prepare_or_throw(db,
                           "UPDATE chats SET last_seq = ?1, last_activity_ms = CASE WHEN ?4 THEN"
                           " ?2 ELSE last_activity_ms END, hidden = CASE WHEN ?4 THEN 0 ELSE"
                           " hidden END WHERE id = ?3")),
      insert_message_(prepare_or_throw(
          db,
          "INSERT INTO messages (chat_id, seq, id, sender, text, ts_ms, client_id, hooks, kind, "
          "target, target_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")),
      select_by_seq_(prepare_or_throw(db, "SELECT " + std::string(kMessageColumns) +
                                              " FROM messages WHERE chat_id = ? AND seq = ?")),
      // A chat's messages by id: no index (one per message would cost every
      // insert); a scan of the chat, for the rare edit that names an id.
      select_by_id_(prepare_or_throw(db, "SELECT " + std::string(kMessageColumns) +
                                             " FROM messages WHERE chat_id = ? AND id = ?")),
      edit_target_(prepare_or_throw(
          db, "UPDATE messages SET text = ?3, edited_ms = ?4 WHERE chat_id = ?1 AND seq = ?2")),
      remove_target_(prepare_or_throw(
          db, "UPDATE messages SET text = '', deleted = 1 WHERE chat_id = ?1 AND seq = ?2")),
      update_blocks_(prepare_or_throw(db, "UPDATE chats SET blocks = ? WHERE id = ?")),
      find_by_client_id_(prepare_or_throw(db, "SELECT " + std::string(kMessageColumns) +
                                                  " FROM messages WHERE chat_id = ? AND sender = "
                                                  "? AND client_id = ?")) {}

bool SqliteWriter::commit(std::span<const chat::PendingMessage> batch,
                          std::vector<AppendResult>& results) {
  // Emptied before a batch, never during one: `touched` points into it.
  if (chats_.size() >= max_cached_chats_) chats_.clear();
  const bool ok = write_batch(batch, results);
  if (!ok) {
    // Nothing of the batch is stored; forget cached sequences, which may
    // have advanced inside the rolled-back transaction.
    chats_.clear();
    for (auto& result : results) result = AppendResult{StoreError::unavailable, nullptr, false};
  }
  ready_.store(ok, std::memory_order_relaxed);
  return ok;
}

bool SqliteWriter::write_batch(std::span<const chat::PendingMessage> batch,
                               std::vector<AppendResult>& results) {
  if (step(begin_) != SQLITE_DONE) {
    spdlog::error("sqlite: cannot begin a transaction: {}", sqlite3_errmsg(db_));
    return false;
  }
  const std::int64_t timestamp = chat::now_ms();
  std::vector<ChatState*> touched;
  bool ok = true;
  for (std::size_t i = 0; ok && i < batch.size(); ++i) {
    const chat::PendingMessage& pending = batch[i];
    ChatState* state = chat_state(pending.chat);
    if (state == nullptr) {
      ok = false;
      break;
    }
    if (!pending.client_id.empty()) {
      sqlite3_stmt* find = find_by_client_id_.get();
      StatementReset reset(find);
      sqlite3_bind_int64(find, 1, state->id);
      bind_text(find, 2, pending.sender);
      bind_text(find, 3, pending.client_id);
      if (sqlite3_step(find) == SQLITE_ROW) {
        results[i] = duplicate_of(*read_message(find, pending.chat), pending.origin);
        continue;
      }
    }
    auto message = make_message(pending, timestamp);
    const Outcome outcome = apply(pending, *state, *message, timestamp);
    if (outcome == Outcome::failed) {
      ok = false;
      break;
    }
    if (outcome == Outcome::refused || outcome == Outcome::unchanged) {
      results[i] = outcome == Outcome::refused ? refused(refusal_)
                                               : AppendResult{StoreError::none, message, true};
      continue;
    }
    message->seq = state->last_seq + 1;
    if (!insert(*state, *message)) {
      spdlog::error("sqlite: cannot insert a message into chat {}: {}", pending.chat.str(),
                    sqlite3_errmsg(db_));
      ok = false;
      break;
    }
    if (std::find(touched.begin(), touched.end(), state) == touched.end()) {
      touched.push_back(state);
      state->had_message = false;
    }
    // Only a message is activity: a block must not move the chat up the
    // blocked user's list, nor an erasure's change show the erased user's.
    if (message->kind == chat::EntryKind::message) state->had_message = true;
    state->last_seq = message->seq;
    results[i] = AppendResult{StoreError::none, std::move(message), false};
  }
  for (std::size_t i = 0; ok && i < touched.size(); ++i) {
    sqlite3_stmt* update = update_chat_.get();
    StatementReset reset(update);
    sqlite3_bind_int64(update, 1, static_cast<sqlite3_int64>(touched[i]->last_seq));
    sqlite3_bind_int64(update, 2, timestamp);
    sqlite3_bind_int64(update, 3, touched[i]->id);
    sqlite3_bind_int(update, 4, touched[i]->had_message ? 1 : 0);
    ok = sqlite3_step(update) == SQLITE_DONE;
    if (!ok) spdlog::error("sqlite: cannot update a chat: {}", sqlite3_errmsg(db_));
  }
  if (ok && step(commit_) == SQLITE_DONE) return true;
  if (ok) spdlog::error("sqlite: commit failed: {}", sqlite3_errmsg(db_));
  step(rollback_);
  return false;
}

// The chat's rules for one entry, and a change's effect on what it changes:
// `message` is the entry to insert (a change's target_id is set here).
SqliteWriter::Outcome SqliteWriter::apply(const chat::PendingMessage& pending, ChatState& state,
                                          chat::Message& message, std::int64_t timestamp) {
  const bool sender_is_first = pending.sender == pending.chat.first();
  // bit 1: the first user blocks the second; bit 2: the second blocks the first.
  const int blocked_bit = sender_is_first ? 2 : 1;
  const int blocking_bit = sender_is_first ? 1 : 2;
  if (refused_when_blocked(pending.kind) && (state.blocks & blocked_bit) != 0) {
    refusal_ = Refusal::blocked;
    return Outcome::refused;
  }
  switch (pending.kind) {
    case chat::EntryKind::message:
    case chat::EntryKind::erase:
      return Outcome::insert;
    case chat::EntryKind::block:
    case chat::EntryKind::unblock: {
      const bool block = pending.kind == chat::EntryKind::block;
      const int blocks = block ? (state.blocks | blocking_bit) : (state.blocks & ~blocking_bit);
      if (blocks == state.blocks) return Outcome::unchanged;
      sqlite3_stmt* update = update_blocks_.get();
      StatementReset reset(update);
      sqlite3_bind_int(update, 1, blocks);
      sqlite3_bind_int64(update, 2, state.id);
      if (sqlite3_step(update) != SQLITE_DONE) return Outcome::failed;
      state.blocks = blocks;
      message.text.clear();
      return Outcome::insert;
    }
    case chat::EntryKind::filler:  // MongoDB's (an unwritten reservation); nothing to hold here
      return Outcome::unchanged;
    case chat::EntryKind::edit:
    case chat::EntryKind::remove:
      break;
  }
  sqlite3_stmt* find = pending.target != 0 ? select_by_seq_.get() : select_by_id_.get();
  StatementReset reset(find);
  sqlite3_bind_int64(find, 1, state.id);
  if (pending.target != 0) {
    sqlite3_bind_int64(find, 2, static_cast<sqlite3_int64>(pending.target));
  } else {
    bind_text(find, 2, pending.target_id);
  }
  const int rc = sqlite3_step(find);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Outcome::failed;
  const auto target = rc == SQLITE_ROW ? read_message(find, pending.chat) : nullptr;
  refusal_ = check_change(target.get(), pending, timestamp);
  if (refusal_ != Refusal::none) return Outcome::refused;
  message.target = target->seq;
  message.target_id = target->id;
  const bool edit = pending.kind == chat::EntryKind::edit;
  if (!edit) message.text.clear();
  sqlite3_stmt* update = edit ? edit_target_.get() : remove_target_.get();
  StatementReset reset_update(update);
  sqlite3_bind_int64(update, 1, state.id);
  sqlite3_bind_int64(update, 2, static_cast<sqlite3_int64>(target->seq));
  if (edit) {
    bind_text(update, 3, message.text);
    sqlite3_bind_int64(update, 4, timestamp);
  }
  return sqlite3_step(update) == SQLITE_DONE ? Outcome::insert : Outcome::failed;
}

bool SqliteWriter::insert(const ChatState& state, const chat::Message& message) {
  sqlite3_stmt* insert = insert_message_.get();
  StatementReset reset(insert);
  sqlite3_bind_int64(insert, 1, state.id);
  sqlite3_bind_int64(insert, 2, static_cast<sqlite3_int64>(message.seq));
  bind_text(insert, 3, message.id);
  bind_text(insert, 4, message.sender);
  bind_text(insert, 5, message.text);
  sqlite3_bind_int64(insert, 6, message.timestamp_ms);
  if (message.client_id.empty()) {
    sqlite3_bind_null(insert, 7);
  } else {
    bind_text(insert, 7, message.client_id);
  }
  sqlite3_bind_int(insert, 8, message.hooks);
  sqlite3_bind_int(insert, 9, static_cast<int>(message.kind));
  sqlite3_bind_int64(insert, 10, static_cast<sqlite3_int64>(message.target));
  if (message.target_id.empty()) {
    sqlite3_bind_null(insert, 11);
  } else {
    bind_text(insert, 11, message.target_id);
  }
  return sqlite3_step(insert) == SQLITE_DONE;
}

SqliteWriter::ChatState* SqliteWriter::chat_state(const chat::ChatKey& chat) {
  if (const auto found = chats_.find(chat.str()); found != chats_.end()) return &found->second;
  ChatState state;
  {
    sqlite3_stmt* select = select_chat_.get();
    StatementReset reset(select);
    bind_text(select, 1, chat.str());
    const int rc = sqlite3_step(select);
    if (rc == SQLITE_ROW) {
      state.id = sqlite3_column_int64(select, 0);
      state.last_seq = static_cast<std::uint64_t>(sqlite3_column_int64(select, 1));
      state.blocks = sqlite3_column_int(select, 2);
      return &chats_.emplace(chat.str(), state).first->second;
    }
    if (rc != SQLITE_DONE) {
      spdlog::error("sqlite: cannot read chat {}: {}", chat.str(), sqlite3_errmsg(db_));
      return nullptr;
    }
  }
  sqlite3_stmt* insert = insert_chat_.get();
  StatementReset reset(insert);
  bind_text(insert, 1, chat.str());
  bind_text(insert, 2, chat.first());
  bind_text(insert, 3, chat.second());
  sqlite3_bind_int64(insert, 4, chat::now_ms());
  if (sqlite3_step(insert) != SQLITE_DONE) {
    spdlog::error("sqlite: cannot create chat {}: {}", chat.str(), sqlite3_errmsg(db_));
    return nullptr;
  }
  state.id = sqlite3_last_insert_rowid(db_);
  return &chats_.emplace(chat.str(), state).first->second;
}

}  // namespace chatd::store::sqlite
