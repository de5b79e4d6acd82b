#pragma once

#include "store/outbox.h"
#include "store/sqlite/sqlite_handle.h"

namespace chatd::store::sqlite {

/// The webhook outbox on SQLite: messages whose `hooks` column is not 0 (the
/// partial index messages_with_hooks), and the webhook_failed table. Its
/// writes are small transactions of their own on its own connection; the
/// lock file already makes this the only instance, so it always holds the
/// lease.
class SqliteOutbox final : public Outbox {
 public:
  /// Prepares the statements; throws SqliteError when the schema is wrong.
  explicit SqliteOutbox(Database db);

  std::optional<std::vector<chat::MessagePtr>> pending(std::size_t chats, std::size_t per_chat,
                                                       const ReadFrom& after) override;
  std::optional<std::vector<PendingRead>> pending_reads(std::size_t limit) override;
  bool settle(std::span<const SettledHook> delivered, std::span<const FailedEvent> failed) override;
  std::optional<std::vector<FailedEvent>> failed(std::size_t limit) override;
  std::optional<bool> retry(const std::string& event_id) override;
  std::optional<Backlog> backlog() override;
  bool hold_lease(const std::string&, std::chrono::milliseconds) override { return true; }

 private:
  /// Runs `write` in one immediate transaction; false (rolled back) when it
  /// or the commit failed.
  template <typename Write>
  bool in_transaction(const char* what, Write write);
  bool change_bit(const Statement& statement, const chat::ChatKey& chat, std::uint64_t seq,
                  std::uint8_t bit);
  /// Settles (or, for a retry, sets again) a receipt's read event.
  bool change_read(const Statement& statement, const chat::ChatKey& chat, const std::string& reader,
                   std::uint64_t seq);

  Database db_;
  Statement begin_, commit_, rollback_, next_chat_, pending_, clear_bit_, set_bit_, pending_reads_,
      clear_read_, set_read_, insert_failed_, list_failed_, find_failed_, delete_failed_, backlog_,
      backlog_reads_, count_failed_;
  std::int64_t after_chat_id_ = 0;  ///< Where the last pending() stopped.
  std::string after_read_chat_;     ///< Where the last pending_reads() stopped.
};

}  // namespace chatd::store::sqlite
