#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "chat/chat_key.h"

namespace chatd::chat {

/// Identifies one local connection; 0 means "no local connection" (e.g. a
/// message that arrived from another instance or through the REST API).
using ConnectionId = std::uint64_t;

/// What an entry of a chat's order is (docs/protocol.md, "A chat's order"):
/// a message, or a change to the chat, which takes a seq of its own.
enum class EntryKind : std::uint8_t {
  message = 0,
  edit = 1,     ///< `target`'s text is now `text`.
  remove = 2,   ///< `target` is deleted (a tombstone keeps its seq).
  erase = 3,    ///< Every earlier message `sender` sent is a tombstone (an operator's erasure).
  block = 4,    ///< `sender` blocks the chat's other user.
  unblock = 5,  ///< `sender` no longer blocks the other user.
  /// Holds a seq that was reserved and never written (MongoDB: an instance
  /// died between reserving a chat's seqs and inserting its entries, or a
  /// reserved entry was refused). Keeps the order gap-free; no client ever
  /// sees one (docs/scaling.md, "Seq allocation").
  filler = 6,
};

/// Whether the entry is a change rather than a message.
inline bool is_change(EntryKind kind) {
  return kind != EntryKind::message;
}

/// An entry the store has committed: a message or a change. Immutable once
/// made: it is shared by every receiver as a `shared_ptr<const Message>`.
struct Message {
  explicit Message(ChatKey chat_key) : chat(std::move(chat_key)) {}

  ChatKey chat;
  std::uint64_t seq = 0;  ///< Position in the chat's single total order, from 1.
  std::string id;         ///< 24 hex digits, unique across chats and instances.
  std::string sender;
  std::string text;
  std::int64_t timestamp_ms = 0;  ///< Server time at commit, ms since the Unix epoch.
  std::string client_id;          ///< The sender's idempotency key; empty when none.
  EntryKind kind = EntryKind::message;
  /// A change: the seq of the message it changes (edit, remove); 0 otherwise.
  std::uint64_t target = 0;
  /// A message: when it was last edited (0: never); a change of one: the
  /// changed message's id in `target_id`.
  std::int64_t edited_ms = 0;
  bool deleted = false;   ///< A message: it is a tombstone (its text is gone).
  std::string target_id;  ///< An edit or remove: the id of the message it changes.
  /// Webhook events still to send for it (webhooks::EventBits); stored with it,
  /// so that an event exists once its message is committed.
  std::uint8_t hooks = 0;
  ConnectionId origin = 0;  ///< The local connection it came from; not stored.
  /// When the frame was read, for the delivery-latency metric; not stored.
  std::chrono::steady_clock::time_point received_at{};
};

using MessagePtr = std::shared_ptr<const Message>;

/// A message (or a change) a connection has read and validated, not yet
/// committed.
struct PendingMessage {
  ChatKey chat;
  std::string sender;
  std::string text;
  std::string client_id;
  ConnectionId origin = 0;
  std::chrono::steady_clock::time_point received_at{};
  std::uint8_t hooks = 0;  ///< Webhook events to send once committed (Message::hooks).
  EntryKind kind = EntryKind::message;
  /// An edit or remove: the message it changes, by seq, or by id when seq is 0.
  std::uint64_t target = 0;
  std::string target_id{};
  /// An edit: refused when the message is older than this (0: no limit).
  std::int64_t edit_window_ms = 0;
};

/// A new message id: 4 bytes of seconds, 5 random bytes fixed per process and
/// a 3-byte counter, as 24 hex digits (the layout of a MongoDB ObjectId, so
/// ids sort roughly by time and never collide between instances).
std::string make_message_id(std::int64_t timestamp_ms);

/// Whether make_message_id() of this process made `id` (its 5 random bytes).
bool made_here(std::string_view id);
/// The 24-bit counter of an id this process made (ids are made in commit
/// order by the store's single writer), nullopt for another process's id.
std::optional<std::uint32_t> made_here_counter(std::string_view id);

/// Which local connection the messages this process made came from, so that
/// a copy of one read back from the store before its commit was announced
/// (a slow commit: the fan-out between instances reads the store to fill
/// gaps) is not given back to the connection that sent it. A ring indexed by
/// the ids' counter, holding the last 65,536 ids made: far more than one
/// commit makes while another copy could be read. Off and empty until
/// enabled (only the fan-out between instances needs it). Thread-safe.
void enable_origin_book();
void note_origin(std::string_view id, ConnectionId origin);
/// The connection noted for `id`; 0 when none (not made here, or too old).
ConnectionId noted_origin(std::string_view id);

/// ISO-8601 UTC with milliseconds, e.g. "2026-11-25T04:24:44.123Z".
std::string format_timestamp(std::int64_t timestamp_ms);

/// Milliseconds since the Unix epoch, from the system clock.
std::int64_t now_ms();

}  // namespace chatd::chat
