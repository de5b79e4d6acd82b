#pragma once

#include <atomic>
#include <string>
#include <unordered_map>
#include <vector>

#include "store/backend.h"
#include "store/sqlite/sqlite_handle.h"

namespace chatd::store::sqlite {

/// The group commit, on the writer thread's connection: one transaction per
/// batch. Sequence numbers come from a cache of each chat's last sequence,
/// which is why one SQLite file serves one chatd process at a time (the lock
/// file).
class SqliteWriter final : public Committer {
 public:
  /// Prepares the statements; throws SqliteError when the schema is wrong.
  /// `ready` is set after each commit to whether it succeeded; the chat cache
  /// is emptied before a batch once it holds `max_cached_chats`.
  SqliteWriter(sqlite3* db, std::atomic<bool>& ready, std::size_t max_cached_chats);

  // Committer
  bool commit(std::span<const chat::PendingMessage> batch,
              std::vector<AppendResult>& results) override;

 private:
  struct ChatState {
    sqlite3_int64 id = 0;
    std::uint64_t last_seq = 0;
    int blocks = 0;            ///< chats.blocks: who blocks whom
    bool had_message = false;  ///< The batch being written holds a message of it.
  };
  /// What the chat's rules make of one entry of a batch.
  enum class Outcome {
    insert,     ///< It takes the chat's next seq.
    refused,    ///< refusal_ says why; nothing changed.
    unchanged,  ///< A block or unblock that was so already.
    failed,     ///< The database failed.
  };

  bool write_batch(std::span<const chat::PendingMessage> batch, std::vector<AppendResult>& results);
  ChatState* chat_state(const chat::ChatKey& chat);
  Outcome apply(const chat::PendingMessage& pending, ChatState& state, chat::Message& message,
                std::int64_t timestamp);
  bool insert(const ChatState& state, const chat::Message& message);

  sqlite3* db_;
  std::atomic<bool>& ready_;
  const std::size_t max_cached_chats_;
  Statement begin_, commit_, rollback_, select_chat_, insert_chat_, update_chat_, insert_message_,
      select_by_seq_, select_by_id_, edit_target_, remove_target_, update_blocks_,
      find_by_client_id_;
  Refusal refusal_ = Refusal::none;  ///< Why apply() last refused an entry.
  /// The id and last seq of the chats written lately, by chat key; at most
  /// max_cached_chats_ plus one batch of them.
  std::unordered_map<std::string, ChatState> chats_;
};

}  // namespace chatd::store::sqlite
