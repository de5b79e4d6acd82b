#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "chat/message.h"
#include "store/mongo/bson_mapping.h"
#include "store/mongo/mongo_handles.h"
#include "store/store.h"

namespace chatd::store::mongo {

/// Writes one group commit to MongoDB. Used by MongoStore's writer thread
/// only (it owns a client, which is not thread-safe).
///
/// Sequence numbers: reserved, then written. For each chat of the batch one
/// findAndModify on its `chats` document adds the number of the batch's
/// entries of that chat to `last_seq` and returns the document as it was, so
/// the range (old last_seq, old + n] is this writer's alone, however many
/// instances write the chat: no instance ever races another for a seq, and
/// no insert is refused for one. The same atomic update carries the chat's
/// new activity (last_activity, hidden_for) and the batch's blocks (blocked_by),
/// so a block and the seq it takes change together: every send reserved
/// after a block sees it. Then one ordered bulk insert writes every entry of
/// the batch with its seq. A batch is therefore (chats in it) + 1 commands,
/// whatever the number of instances, none per message (plus one lookup of
/// client ids when the server has no unique index for them: FerretDB 1.x).
///
/// A reserved seq no entry takes (a send refused because the peer blocks,
/// a block that changed nothing) gets a filler entry (chat::EntryKind::filler)
/// in the same insert, so the order stays gap-free. A reservation whose insert
/// failed is filled by this writer's next batch (unfilled_); one whose writer
/// died in between is sealed by another instance that follows the chat once
/// the entries after it are MONGO_SEAL_SECONDS old (fanout/redis/store_catch_up).
/// The unique index {chat, seq} arbitrates between a late insert and a seal:
/// an entry whose seq was sealed is answered unavailable (the client retries;
/// its client id finds nothing, so it is stored once, at a new seq).
///
/// A failed write whose outcome is unknown (the connection dropped after the
/// bulk was sent, or the write concern was not met) is reported as
/// unavailable, yet the server may have kept it: it then shows up in the
/// history with its seq, never delivered live. What is acknowledged is always
/// stored; what is refused is only maybe stored. Protocol v2's client ids
/// make the sender's retry of such a message find the original.
///
/// Changes (edits, deletes, erasures, blocks; batch_writer_changes.cpp) take
/// their seqs from the same reservation. An edit's or delete's target is read
/// before it (a change that names no message, or breaks a rule, takes no
/// seq) and its effect on the target is applied after the insert.
/// An entry that holds `seq` of `chat` and shows nothing (chat::EntryKind::filler).
std::shared_ptr<chat::Message> make_filler(const chat::ChatKey& chat, std::uint64_t seq,
                                           std::int64_t timestamp_ms);

class BatchWriter {
 public:
  BatchWriter(mongoc_client_t* client, const std::string& database);

  /// Writes `batch`, filling `results` (one per message, in order). Returns
  /// false when the server was unreachable, so the store reports not-ready.
  /// `look_up_client_ids`: the server has no unique index on client ids, so
  /// retried sends are looked up first (one query per batch that has any).
  bool write(std::span<const chat::PendingMessage> batch, std::vector<AppendResult>& results,
             bool look_up_client_ids = true);
  /// The fillers the last write() stored: committed entries like the
  /// batch's, which the listener hears of too (they move every instance's
  /// sequencer on past their seqs).
  std::vector<chat::MessagePtr>& fillers() { return fillers_; }

 private:
  using MutableMessage = std::shared_ptr<chat::Message>;
  /// One entry to insert: a batch entry (index) or a filler (index npos).
  struct Insert {
    std::size_t index;
    MutableMessage message;
  };
  static constexpr std::size_t kFiller = static_cast<std::size_t>(-1);
  /// Reserved seqs left unwritten that the next batches fill (unfilled_);
  /// past this the rest are left to the seal by another instance.
  static constexpr std::size_t kMaxUnfilled = 4096;
  /// A chat's part of the batch: its entries to store, in batch order.
  struct ChatPart {
    const chat::ChatKey* chat = nullptr;
    std::vector<std::size_t> entries;
    bool has_message = false;  ///< New activity: last_activity, hidden_for.
    /// The one user whose blocks and unblocks the reservation applies
    /// (empty: none, or both users changed blocks: then store_block).
    std::string blocker;
    bool blocker_blocks = false;  ///< The last of that user's changes.
    bool both_block = false;
  };
  /// What an update of `chats` came to.
  enum class Update { changed, unchanged, failed };

  bool find_originals(std::span<const chat::PendingMessage> batch,
                      std::vector<AppendResult>& results);
  /// Reads the targets of the batch's edits and deletes; a change its rules
  /// refuse gets its result here and takes no seq.
  bool check_targets(std::span<const chat::PendingMessage> batch,
                     std::vector<AppendResult>& results, std::int64_t timestamp_ms);
  /// What a reservation found: the chat's last_seq and blocks before it.
  struct Reservation {
    std::uint64_t last = 0;
    BlockState blocks;
  };
  std::vector<std::optional<AppendResult>> evaluate(const ChatPart& part,
                                                    std::span<const chat::PendingMessage> batch,
                                                    BlockState blocks, std::int64_t timestamp_ms,
                                                    bool fold_blocks,
                                                    std::vector<MutableMessage>& entries);
  bool find_and_reserve(const chat::ChatKey& chat, std::uint64_t count,
                        std::optional<std::int64_t> activity,
                        std::optional<std::pair<std::string_view, bool>> block, Reservation& range);
  /// Reserves the part's seqs, numbers its entries (fillers for the seqs
  /// none takes) and adds them to `inserts`.
  bool reserve(const ChatPart& part, std::span<const chat::PendingMessage> batch,
               std::vector<AppendResult>& results, std::vector<Insert>& inserts,
               std::int64_t timestamp_ms);
  bool insert_all(std::vector<Insert>& inserts, std::span<const chat::PendingMessage> batch,
                  std::vector<AppendResult>& results);
  bool execute_bulk_insert(const std::vector<Insert>& inserts, std::size_t start, std::size_t end,
                           Bson& reply, bson_error_t& error);
  bool absorb_stored(std::vector<Insert>& inserts, std::size_t from,
                     std::vector<AppendResult>& results);
  std::optional<std::size_t> resolve_duplicate_key(std::vector<Insert>& inserts,
                                                   std::size_t refused,
                                                   std::span<const chat::PendingMessage> batch,
                                                   std::vector<AppendResult>& results);
  /// Takes inserts[from..] out of the bulk: their entries answered
  /// unavailable, their seqs left for unfilled_ (fillers next time).
  void give_up(std::vector<Insert>& inserts, std::size_t from, std::vector<AppendResult>& results);
  /// The first message `filter` finds (nullptr: none); false when the query failed.
  bool find_one(const Bson& filter, const Bson* options, chat::MessagePtr& found, const char* what);
  /// Logs a failed operation, notes whether it means "unreachable"; false.
  bool failed(const bson_error_t& error, const char* what);

  // Changes (batch_writer_changes.cpp).
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
  /// Who blocks whom in each chat as this writer last reserved in it: what
  /// the next reservation assumes (checked against what it returns).
  std::unordered_map<std::string, BlockState> known_blocks_;
  static constexpr std::size_t kMaxKnownChats = 100'000;
  /// The batch's edits and deletes: their entries, with target and text set.
  std::unordered_map<std::size_t, MutableMessage> changes_;
  /// Reserved seqs whose insert failed: the next batch writes fillers there
  /// (a filler refused by the unique index means the entry was stored after
  /// all). Bounded: past kMaxUnfilled the oldest are left to the seal.
  std::vector<std::pair<chat::ChatKey, std::uint64_t>> unfilled_;
  std::vector<chat::MessagePtr> fillers_;
  bool unreachable_ = false;  ///< Set during write() by connection errors.
};

}  // namespace chatd::store::mongo
