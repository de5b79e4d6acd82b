#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "chat/message.h"

namespace chatd::fanout {

/// Puts the messages of each chat this instance follows into the chat's store
/// sequence before they reach the hub, whichever way they came: this
/// instance's commits, Redis from the other instances, or reads from the store.
///
/// Per chat it knows the last seq delivered. The next one is delivered at once;
/// one already delivered is dropped; one past a gap is held until the gap
/// closes, or, when it has not closed within the hold time, until the missing
/// messages are read from the store (fill()). A chat it starts following is
/// held until sync() gives it the newest messages of the store as a baseline.
///
/// A message read from the store that this process committed itself is a
/// stand-in: its own copy, which knows the connection it came from (and so is
/// not echoed to it), is on its way from the commit thread. A stand-in next
/// in line waits up to `stand_in_wait` for that copy before it is delivered.
///
/// Why here and not in fanout/redis/: only the Redis fan-out uses it today,
/// but it knows nothing of Redis. It orders messages from any source (this
/// instance's commits, another instance, the store), so any fan-out between
/// instances would need the same, and it is unit-tested without hiredis.
///
/// Thread-safe. Chats are spread over shards, each with its own mutex, held
/// while delivering so that one chat's messages reach the hub one at a time,
/// in order. The deliver callback must not call back into the sequencer.
class ChatSequencer {
 public:
  using Clock = std::chrono::steady_clock;
  using Deliver = std::function<void(const chat::MessagePtr&)>;

  /// A read the owner should make from the store: the messages of `chat`
  /// after `after_seq`, oldest first, handed back through fill().
  struct FillRequest {
    chat::ChatKey chat;
    std::uint64_t after_seq = 0;
  };

  /// `gap_hold`: how long a gap is waited for before it is filled from the
  /// store. `stand_in_wait`: how long a stand-in waits for its own copy, which
  /// the commit thread announces only once its whole batch is written (with
  /// MongoDB, sequence conflicts between instances can take that long); it is
  /// delivered after that anyway. `made_here`: whether this process committed
  /// a message (chat::made_here on its id by default).
  ChatSequencer(Deliver deliver, Clock::duration gap_hold, Clock::duration stand_in_wait,
                std::function<bool(const chat::Message&)> made_here = {});

  /// Starts following `chat` (no-op when already followed): what arrives for
  /// it is held until sync().
  void follow(const chat::ChatKey& chat);
  /// Stops following `chat` and forgets what was held for it.
  void unfollow(const chat::ChatKey& chat);
  bool following(const chat::ChatKey& chat) const;
  /// Every followed chat.
  std::vector<chat::ChatKey> followed() const;

  /// A committed message. Delivered, held or dropped; never delivered twice.
  /// Messages of chats not followed are dropped.
  void offer(const chat::MessagePtr& message);

  /// The newest messages of the store for a followed chat (oldest first),
  /// read after the chat's Redis subscription was in place: their last seq
  /// becomes the baseline. Each is delivered unless a later baseline already
  /// passed it; connections drop what they already had by seq.
  void sync(const chat::ChatKey& chat, std::span<const chat::MessagePtr> newest);

  /// Messages read from the store after a FillRequest (or after a Redis
  /// outage): delivered in order with what was held.
  void fill(const chat::ChatKey& chat, std::span<const chat::MessagePtr> page);
  /// A fill read failed: it is asked again after the hold time.
  void fill_failed(const chat::ChatKey& chat);

  /// The fills now due: gaps older than the hold time with no fill running.
  /// Delivers the stand-ins whose own copy did not come within the hold time.
  std::vector<FillRequest> due(Clock::time_point now);

  /// Whether `chat` is followed and has its baseline.
  bool synced(const chat::ChatKey& chat) const;
  /// The last seq delivered for `chat`, 0 when none or not followed.
  std::uint64_t delivered(const chat::ChatKey& chat) const;
  /// Messages held behind gaps, over all chats.
  std::size_t held() const;

 private:
  struct Held {
    chat::MessagePtr message;
    bool stand_in = false;    ///< read from the store; this process's own copy is coming
    Clock::time_point since;  ///< when it was held
  };
  struct ChatState {
    bool synced = false;
    bool filling = false;
    std::uint64_t delivered = 0;
    std::map<std::uint64_t, Held> held;  ///< seq > delivered
    Clock::time_point gap_since{};       ///< when the gap now open was found
  };
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, ChatState> chats;
    std::size_t waiting = 0;  ///< chats with held messages: due() skips shards without
  };
  /// Keeps Shard::waiting right across one change of a chat's held messages.
  class WaitingGuard {
   public:
    WaitingGuard(Shard& shard, const ChatState& state)
        : shard_(shard), state_(state), before_(!state.held.empty()) {}
    ~WaitingGuard() {
      const bool after = !state_.held.empty();
      if (after && !before_) ++shard_.waiting;
      if (!after && before_) --shard_.waiting;
    }
    WaitingGuard(const WaitingGuard&) = delete;
    WaitingGuard& operator=(const WaitingGuard&) = delete;

   private:
    Shard& shard_;
    const ChatState& state_;
    bool before_;
  };
  static constexpr std::size_t kShards = 64;
  // Messages held behind one chat's gap; past it the newest gives way and is
  // read from the store with the gap (nothing is lost). Not a setting: a gap
  // is held for REDIS_GAP_MS (200 ms) before it is filled, and a chat's
  // senders are rate-limited (MESSAGES_PER_SECOND per connection, at most
  // MAX_CONNECTIONS_PER_USER each), so a real chat never comes near it; it
  // only caps a chat whose fills keep failing. All chats together are shown
  // by chatd_redis_held_messages.
  static constexpr std::size_t kMaxHeldPerChat = 4096;

  Shard& shard_of(const chat::ChatKey& chat) const;
  /// Runs `change` on a followed chat's state under its shard's mutex (nothing
  /// when not followed), keeping Shard::waiting right.
  template <typename Change>
  void with_chat(const chat::ChatKey& chat, Change&& change) {
    Shard& shard = shard_of(chat);
    std::lock_guard lock(shard.mutex);
    const auto found = shard.chats.find(chat.str());
    if (found == shard.chats.end()) return;
    const WaitingGuard guard(shard, found->second);
    change(found->second);
  }
  void sync_locked(ChatState& state, std::span<const chat::MessagePtr> newest);
  /// Delivers what follows `state.delivered` without a gap (a young stand-in
  /// counts as one); the shard's mutex is held.
  void drain_locked(ChatState& state, Clock::time_point now);
  /// Delivers `message` if next in line (and what it unblocks), else holds it.
  /// `from_store`: read from the store (it may be a stand-in).
  void accept_locked(ChatState& state, const chat::MessagePtr& message, bool from_store);
  /// Keeps `message` in `state.held` unless delivered already; a real copy
  /// replaces a stand-in.
  void hold_locked(ChatState& state, const chat::MessagePtr& message, bool stand_in,
                   Clock::time_point now);

  Deliver deliver_;
  Clock::duration gap_hold_;
  Clock::duration stand_in_wait_;
  std::function<bool(const chat::Message&)> made_here_;
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace chatd::fanout
