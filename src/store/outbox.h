#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "chat/message.h"

namespace chatd::store {

/// The webhook events a message can carry (Message::hooks bits).
inline constexpr std::uint8_t kHookCreated = 1;  ///< message.created
inline constexpr std::uint8_t kHookOffline = 2;  ///< message.offline
/// message.read: not a Message::hooks bit but a receipt's (Outbox::pending_reads).
inline constexpr std::uint8_t kHookRead = 4;
/// In the order a message's events are sent.
inline constexpr std::uint8_t kHookBits[] = {kHookCreated, kHookOffline};

/// "created", "offline": how the stores name a bit.
inline const char* hook_name(std::uint8_t bit) {
  return bit == kHookCreated ? "created" : "offline";
}

/// One webhook event taken off a message: which message, and which of its
/// pending events (a Message::hooks bit) was settled.
struct SettledHook {
  chat::ChatKey chat;
  std::uint64_t seq = 0;
  std::uint8_t bit = 0;
  std::string reader;  ///< kHookRead: whose receipt.
};

/// A read receipt that moved forward with message.read on: `reader` has read
/// `chat` up to `seq`, stored at `ts_ms`.
struct PendingRead {
  chat::ChatKey chat;
  std::string reader;
  std::uint64_t seq = 0;
  std::int64_t ts_ms = 0;
};

/// An event kept after its last attempt failed, listed and retried through
/// the admin API.
struct FailedEvent {
  std::string id;
  std::string type;
  chat::ChatKey chat;
  std::uint64_t seq = 0;
  std::uint8_t bit = 0;  ///< The Message::hooks bit that a retry sets again, or kHookRead.
  std::string reader;    ///< kHookRead: whose receipt.
  std::uint32_t attempts = 0;
  std::string last_error;
  std::int64_t failed_ms = 0;
  std::string body;  ///< The event as it was sent (JSON).
};

/// Events waiting in the store, for /metrics.
struct Backlog {
  std::uint64_t events = 0;    ///< Messages and receipts with an event to send (each once).
  std::int64_t oldest_ms = 0;  ///< Commit time of the oldest; 0 when none.
  std::uint64_t failed = 0;    ///< Events kept as failed.
};

/// The webhook outbox of a backend: the committed messages that still carry
/// events (Message::hooks), read and settled by the webhook sender on a thread
/// of its own. Every call blocks on the database; each answers nullopt or
/// false when the database failed (the sender tries again later).
class Outbox {
 public:
  virtual ~Outbox() = default;

  /// Messages with pending events: of up to `chats` chats, each chat's oldest
  /// `per_chat`, in seq order. Chats are taken in turn: a call continues after
  /// the last chat of the one before and starts over past the end, so a busy
  /// chat cannot keep the others waiting (and a sender with one POST in
  /// flight per chat finds many chats to work on at once).
  ///
  /// `after` tells, per chat, past which seq to read (what the caller holds
  /// already), or nullopt to skip the chat this time (it has enough to do).
  using ReadFrom = std::function<std::optional<std::uint64_t>(const chat::ChatKey&)>;
  virtual std::optional<std::vector<chat::MessagePtr>> pending(std::size_t chats,
                                                               std::size_t per_chat,
                                                               const ReadFrom& after) = 0;

  /// Up to `limit` receipts with a message.read event to send (backends store
  /// one when a receipt moves forward and their options ask for it), in turn
  /// as pending() takes chats. A receipt that moves on before its event was
  /// settled is sent once, with its newest seq.
  virtual std::optional<std::vector<PendingRead>> pending_reads(std::size_t limit) = 0;

  /// Clears the events' bits: they are delivered, or kept as failed (`failed`,
  /// in the same write). A read event settles its receipt only if the receipt
  /// has not moved on since (then the newer one is still to send).
  virtual bool settle(std::span<const SettledHook> delivered,
                      std::span<const FailedEvent> failed) = 0;

  /// The oldest failures first, at most `limit` (one more says there are more).
  virtual std::optional<std::vector<FailedEvent>> failed(std::size_t limit) = 0;

  /// Removes a failed event and sets its bit on its message again, so it is
  /// sent anew. nullopt: the database failed; false: no such event.
  virtual std::optional<bool> retry(const std::string& event_id) = 0;

  virtual std::optional<Backlog> backlog() = 0;

  /// Whether this instance may send: it holds the lease (for `ttl` from now)
  /// or took it over from an instance that let it run out. A store that only
  /// one instance can open always answers true.
  virtual bool hold_lease(const std::string& instance, std::chrono::milliseconds ttl) = 0;
};

}  // namespace chatd::store
