#pragma once

// How chatd's records look in MongoDB, in one place (SPEC §4):
//
//   messages  { _id: ObjectId(message id), chat: "5:alice:bob", seq: Int64,
//               sender, text, ts: Date, client_id?: string,
//               hooks?: ["created", "offline"] }     -- webhook events to send
//             unique {chat: 1, seq: 1}                 -- one order per chat
//             unique {chat: 1, sender: 1, client_id: 1}
//                    where client_id exists             -- idempotent sends (v2)
//             {hooks: 1, chat: 1, seq: 1}              -- the webhook outbox
//   webhook_failed { _id: event id, type, chat, seq, bit, attempts,
//               last_error, failed: Date, body }     -- kept after the last attempt
//             {failed: 1}
//   webhook_lease  { _id: "sender", owner, until: Date } -- which instance sends
//   chats     { _id: "5:alice:bob", participants: [alice, bob],
//               last_seq: Int64, last_activity: Date }
//             {participants: 1, last_activity: -1}     -- a user's conversations
//
// The chat key string is chatd's unambiguous key (chat::ChatKey), never the
// old service's "a_b". These functions only build and read documents; they
// do no I/O, so the unit tests cover them without a server.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
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

/// Filter and options (sort, limit + 1) of one history page.
void append_history_filter(bson_t* filter, const chat::ChatKey& chat, const HistoryQuery& query);
void append_history_options(bson_t* options, const HistoryQuery& query);

/// Upserts a chat after a batch: creates it with its participants, raises
/// last_seq and last_activity (never lowers them: another instance may have
/// written a later message of the chat already).
void append_chat_update(bson_t* update, const chat::ChatKey& chat, std::uint64_t last_seq,
                        std::int64_t timestamp_ms);

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
