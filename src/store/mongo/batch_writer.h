#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "chat/message.h"
#include "store/mongo/bson_mapping.h"
#include "store/mongo/mongo_handles.h"
#include "store/store.h"

namespace chatd::store::mongo {

/// Writes one group commit to MongoDB. Used by MongoStore's writer thread
/// only (it owns a client, which is not thread-safe).
///
/// Sequence numbers, and why they stay gap-free with several instances:
/// a message's seq is whatever its chat's last seq is + 1, from a cache of
/// each chat's last seq; the unique index {chat, seq} decides. If another
/// chatd wrote the chat meanwhile, the insert is refused (duplicate key), the
/// chat's real last seq is read from `messages`, the rest of the chat's
/// messages in the batch are renumbered after it, and the bulk goes on. A seq
/// therefore exists only once a message holds it: a failed write leaves no
/// hole (unlike reserving ranges with $inc on `chats`, where a bulk that fails
/// after the reservation leaves seqs no message will ever have). The cost is
/// a retry when two instances write one chat at the same moment; in the
/// common case a batch is three round trips however many chats it spans: one
/// read of its chats' documents (last_seq and blocks), one ordered bulk
/// insert into `messages`, one bulk upsert of `chats`.
///
/// A failed write whose outcome is unknown (the connection dropped after the
/// bulk was sent, or the write concern was not met) is reported as
/// unavailable, yet the server may have kept it: it then shows up in the
/// history with its seq, never delivered live. What is acknowledged is always
/// stored; what is refused is only maybe stored. Protocol v2's client ids
/// make the sender's retry of such a message find the original.
///
/// Changes (edits, deletes, erasures, blocks; batch_writer_changes.cpp) go
/// through the same inserts: each is a document of `messages` with its kind,
/// taking its chat's next seq like a message. The batch is written in runs:
/// the messages up to the next change in one bulk, then the change alone
/// (its target read, the chat's rules applied, its entry inserted, then its
/// effect on the target or on `chats`), then the next run. A batch without
/// changes is one bulk as before; a chat's entries keep batch order, and the
/// seq conflict handling applies to a change's insert as to a message's.
///
/// Blocks are the chats' `blocked_by`, read in one query per batch for the
/// batch's chats (with their last_seq, see load_chats()) and then followed
/// through the batch's own blocks and unblocks.
class BatchWriter {
 public:
  BatchWriter(mongoc_client_t* client, const std::string& database);

  /// Writes `batch`, filling `results` (one per message, in order). Returns
  /// false when the server was unreachable, so the store reports not-ready.
  bool write(std::span<const chat::PendingMessage> batch, std::vector<AppendResult>& results);

 private:
  using MutableMessage = std::shared_ptr<chat::Message>;
  struct Insert {
    std::size_t index;  ///< Into the batch.
    MutableMessage message;
  };
  /// What a conditional update of `chats` came to.
  enum class Update { changed, unchanged, failed };

  bool find_originals(std::span<const chat::PendingMessage> batch,
                      std::vector<AppendResult>& results);
  bool load_chats(std::span<const chat::PendingMessage> batch,
                  const std::vector<AppendResult>& results);
  bool insert_all(std::vector<Insert>& inserts, std::span<const chat::PendingMessage> batch,
                  std::vector<AppendResult>& results);
  bool execute_bulk_insert(const std::vector<Insert>& inserts, std::size_t start, Bson& reply,
                           bson_error_t& error);
  bool absorb_stored(std::vector<Insert>& inserts, std::size_t from,
                     std::vector<AppendResult>& results);
  std::optional<std::size_t> resolve_duplicate_key(std::vector<Insert>& inserts,
                                                   std::size_t refused,
                                                   std::span<const chat::PendingMessage> batch,
                                                   std::vector<AppendResult>& results);
  /// The first message `filter` finds (nullptr: none); false when the query failed.
  bool find_one(const Bson& filter, const Bson* options, chat::MessagePtr& found, const char* what);
  void update_chats(const std::vector<AppendResult>& results, std::int64_t timestamp_ms);
  /// Logs a failed operation, notes whether it means "unreachable"; false.
  bool failed(const bson_error_t& error, const char* what);

  // Changes (batch_writer_changes.cpp). Each returns false when the database
  // failed, and the rest of the batch is then not written.
  bool apply_change(std::size_t index, std::span<const chat::PendingMessage> batch,
                    std::vector<AppendResult>& results, std::int64_t timestamp_ms);
  bool change_message(std::size_t index, std::span<const chat::PendingMessage> batch,
                      std::vector<AppendResult>& results, MutableMessage entry);
  bool change_blocks(std::size_t index, std::span<const chat::PendingMessage> batch,
                     std::vector<AppendResult>& results, MutableMessage entry);
  bool insert_entry(std::size_t index, std::span<const chat::PendingMessage> batch,
                    std::vector<AppendResult>& results, MutableMessage entry);
  /// The message an edit or delete names, by seq or by id (nullptr: none).
  bool find_target(const chat::PendingMessage& change, chat::MessagePtr& target);
  /// Applies a stored edit or delete entry to its message. `repair`: the
  /// entry was stored before (a retried client id), and may have been stored
  /// without its effect (the write failed in between): apply it unless the
  /// message has changed since.
  bool apply_to_target(const chat::Message& entry, bool repair);
  Update store_block(const chat::ChatKey& chat, const std::string& user, bool blocking);

  Collection messages_;
  Collection chats_;
  /// Last seq of each chat this writer knows of; may lag behind other
  /// instances (the unique index catches that), never runs ahead of the
  /// database (entries of chats in a failed write are dropped).
  std::unordered_map<std::string, std::uint64_t> last_seq_;
  /// Who blocks whom in the current batch's chats: read at its start, then
  /// changed by its blocks and unblocks.
  std::unordered_map<std::string, BlockState> blocks_;
  bool unreachable_ = false;  ///< Set during write() by connection errors.
};

}  // namespace chatd::store::mongo
