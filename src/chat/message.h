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

/// A message the store has committed. Immutable once made: it is shared by
/// every receiver as a `shared_ptr<const Message>`.
struct Message {
  explicit Message(ChatKey chat_key) : chat(std::move(chat_key)) {}

  ChatKey chat;
  std::uint64_t seq = 0;  ///< Position in the chat's single total order, from 1.
  std::string id;         ///< 24 hex digits, unique across chats and instances.
  std::string sender;
  std::string text;
  std::int64_t timestamp_ms = 0;  ///< Server time at commit, ms since the Unix epoch.
  std::string client_id;          ///< The sender's idempotency key; empty when none.
  /// Webhook events still to send for it (webhooks::EventBits); stored with it,
  /// so that an event exists once its message is committed.
  std::uint8_t hooks = 0;
  ConnectionId origin = 0;  ///< The local connection it came from; not stored.
  /// When the frame was read, for the delivery-latency metric; not stored.
  std::chrono::steady_clock::time_point received_at{};
};

using MessagePtr = std::shared_ptr<const Message>;

/// A message a connection has read and validated, not yet committed.
struct PendingMessage {
  ChatKey chat;
  std::string sender;
  std::string text;
  std::string client_id;
  ConnectionId origin = 0;
  std::chrono::steady_clock::time_point received_at{};
  std::uint8_t hooks = 0;  ///< Webhook events to send once committed (Message::hooks).
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

/// ISO-8601 UTC with milliseconds, e.g. "2026-11-25T04:24:44.123Z".
std::string format_timestamp(std::int64_t timestamp_ms);

/// Milliseconds since the Unix epoch, from the system clock.
std::int64_t now_ms();

}  // namespace chatd::chat
