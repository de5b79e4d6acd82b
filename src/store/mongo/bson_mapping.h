#pragma once

// How chatd's records look in MongoDB, in one place (SPEC §4):
//
//   messages  { _id: ObjectId(message id), chat: "5:alice:bob", seq: Int64,
//               sender, text, ts: Date, client_id?: string,
//               hooks?: ["created", "offline"],      -- webhook events to send
//               kind?: Int32,                         -- a change (chat::EntryKind);
//                                                        absent: a message
//               target?: Int64, target_id?: string,   -- an edit's or delete's message
//               edited_at?: Date, deleted?: true }    -- a message's current state
//             unique {chat: 1, seq: 1}                 -- one order per chat
//             unique {chat: 1, sender: 1, client_id: 1}
//                    where client_id exists             -- idempotent sends (v2)
//             {hooks: 1, chat: 1, seq: 1}              -- the webhook outbox
//             {ts: 1}                                  -- retention, oldest first
//   webhook_failed { _id: event id, type, chat, seq, bit, attempts,
//               last_error, failed: Date, body }     -- kept after the last attempt
//             {failed: 1}
//   webhook_lease  { _id: "sender", owner, until: Date } -- which instance sends
//   chats     { _id: "5:alice:bob", participants: [alice, bob],
//               last_seq: Int64,                      -- the last seq reserved (BatchWriter)
//               last_activity: Date,                  -- of the last message
//               blocked_by?: [alice],                 -- alice blocks bob
//               hidden_for?: [bob] }                  -- not in bob's conversation list
//             {participants: 1, last_activity: -1}     -- a user's conversations
//
// kind 6 is a filler: a reserved seq no entry took (chat::EntryKind::filler).
// Legacy documents (no kind, edited_at or deleted) are messages as they were.
// The chat key string is chatd's unambiguous key (chat::ChatKey), never the
// old service's "a_b". These functions only build and read documents; they
// do no I/O, so the unit tests cover them without a server.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/message.h"
#include "store/mongo/mongo_handles.h"
#include "store/store.h"

namespace chatd::store::mongo {

inline constexpr const char* kMessages = "messages";
inline constexpr const char* kChats = "chats";
inline constexpr const char* kReads = "reads";
inline constexpr const char* kWebhookFailed = "webhook_failed";
inline constexpr const char* kWebhookLease = "webhook_lease";
inline constexpr const char* kHooksField = "hooks";
inline constexpr const char* kBlockedBy = "blocked_by";
inline constexpr const char* kHiddenFor = "hidden_for";

/// {hooks: [names of the set bits]} (store::hook_name), and back.
void append_hooks(bson_t* document, std::uint8_t hooks);
std::uint8_t hooks_of(const bson_t* document);

void append_utf8(bson_t* document, const char* key, std::string_view value);
/// The string at `key`, or nullopt when absent or not a string.
std::optional<std::string> utf8_field(const bson_t* document, const char* key);
/// The number (int32, int64 or double) at `key`, or nullopt.
std::optional<std::int64_t> integer_field(const bson_t* document, const char* key);
/// The Date at `key` in ms since the epoch, or nullopt.
std::optional<std::int64_t> date_field(const bson_t* document, const char* key);

/// The messages document of a committed message. `message.id` must be 24 hex
/// digits (chat::make_message_id); it becomes the document's ObjectId `_id`.
void append_message_document(bson_t* document, const chat::Message& message);
/// Reads a messages document back; nullptr when it is not one chatd wrote.
chat::MessagePtr message_from_document(const bson_t* document);

/// The `_id` filter {_id: ObjectId(id)} of one message.
void append_id_filter(bson_t* filter, const std::string& message_id);
/// {chat, sender, client_id}: the original of an idempotent send.
void append_client_id_filter(bson_t* filter, const chat::PendingMessage& message);

/// {$or: [client id filter, ...]} over the batch's messages that have a
/// client id; returns how many have one.
std::size_t append_client_ids_filter(bson_t* filter,
                                     std::span<const chat::PendingMessage> messages);
/// {_id: {$in: [ObjectId(id), ...]}} on `messages`.
void append_ids_filter(bson_t* filter, const std::vector<std::string>& message_ids);
/// {_id: {$in: keys}} on `chats`.
void append_chats_filter(bson_t* filter, const std::vector<std::string>& chat_keys);

/// {kind: {$in: [null, 0]}}: messages, not changes (legacy documents have no kind).
void append_messages_only(bson_t* filter);
/// {deleted: {$ne: true}}: no tombstones.
void append_not_deleted(bson_t* filter);

/// Filter and options (sort, limit + 1) of one history page: its seq range,
/// and HistoryQuery::messages_only and skip_deleted.
void append_history_filter(bson_t* filter, const chat::ChatKey& chat, const HistoryQuery& query);
void append_history_options(bson_t* options, const HistoryQuery& query);

/// {$setOnInsert: {participants: [first, second]}}: what an upsert of a
/// chats document creates it with.
void append_chat_creation(bson_t* update, const chat::ChatKey& chat);

/// The update of one reservation (BatchWriter::reserve): adds `count` to
/// last_seq (creating the chat with its participants), and with it, when the
/// batch held a message (`message_ms`), the activity of append_chat_update;
/// `block`: (user, blocking) adds the user to blocked_by or takes them out.
void append_chat_reservation(bson_t* update, const chat::ChatKey& chat, std::uint64_t count,
                             std::optional<std::int64_t> message_ms,
                             std::optional<std::pair<std::string_view, bool>> block);

/// The update of a chats document that makes `user` block (or unblock) the
/// chat's other user, conditional: it matches only when that changes the
/// state. A block is run as an upsert (a chat without a document gets one),
/// so where `user` blocks already it collides with the document on _id
/// (kDuplicateKey); an unblock where `user` does not block matches nothing.
void append_block_update(bson_t* selector, bson_t* update, const chat::ChatKey& chat,
                         std::string_view user, bool blocking);

/// Who blocks whom in a chats document (its blocked_by).
struct BlockState {
  bool first_blocks = false;   ///< The chat key's first user blocks the second.
  bool second_blocks = false;  ///< The second user blocks the first.

  /// Whether `user` blocks the chat's other user.
  bool blocks(const chat::ChatKey& chat, std::string_view user) const {
    return user == chat.first() ? first_blocks : second_blocks;
  }
  void set(const chat::ChatKey& chat, std::string_view user, bool blocking) {
    (user == chat.first() ? first_blocks : second_blocks) = blocking;
  }
  bool operator==(const BlockState&) const = default;
};
BlockState block_state_of(const bson_t* chat_document, const chat::ChatKey& chat);

/// What an ordered bulk insert's reply says.
struct BulkOutcome {
  std::size_t inserted = 0;                ///< Documents committed, a prefix of the bulk.
  std::optional<std::size_t> error_index;  ///< The first document refused, if any.
  std::int32_t error_code = 0;             ///< Its server error code (11000: duplicate key).
  bool write_concern_error = false;        ///< Written, but not as durably as asked.
};
BulkOutcome parse_bulk_reply(const bson_t* reply);

inline constexpr std::int32_t kDuplicateKey = 11000;

/// The `last_seq` of a chats document, 0 when absent.
std::uint64_t last_seq_of(const bson_t* chat_document);

}  // namespace chatd::store::mongo
