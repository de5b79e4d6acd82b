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

  ChatSequencer(Deliver deliver, Clock::duration gap_hold);

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
  std::vector<FillRequest> due(Clock::time_point now);

  /// Whether `chat` is followed and has its baseline.
  bool synced(const chat::ChatKey& chat) const;
  /// The last seq delivered for `chat`, 0 when none or not followed.
  std::uint64_t delivered(const chat::ChatKey& chat) const;
  /// Messages held behind gaps, over all chats.
  std::size_t held() const;

 private:
  struct ChatState {
    bool synced = false;
    bool filling = false;
    std::uint64_t delivered = 0;
    std::map<std::uint64_t, chat::MessagePtr> held;  ///< seq > delivered + 1
    Clock::time_point gap_since{};                   ///< when `held` last became non-empty
  };
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, ChatState> chats;
  };
  static constexpr std::size_t kShards = 64;
  static constexpr std::size_t kMaxHeldPerChat = 4096;

  Shard& shard_of(const chat::ChatKey& chat) const;
  /// Delivers what follows `state.delivered` without a gap; the shard's mutex is held.
  void drain_locked(ChatState& state);
  /// Delivers `message` if next in line (and what it unblocks), else holds it.
  void accept_locked(ChatState& state, const chat::MessagePtr& message);
  /// Keeps `message` in `state.held` unless delivered already.
  static void hold_locked(ChatState& state, const chat::MessagePtr& message);

  Deliver deliver_;
  Clock::duration gap_hold_;
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace chatd::fanout
