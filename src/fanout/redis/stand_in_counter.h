#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "chat/message.h"

namespace chatd::fanout::redis {

/// Tells which of this instance's own commits the commit thread has not
/// announced yet (publish() not given them): the ChatSequencer's stand-ins.
///
/// A message read from the store that this process made is a stand-in while
/// its commit is unannounced: its own copy, which knows the connection it came
/// from, is on its way. Ids made here carry a 24-bit counter (chat/message.h);
/// this keeps the counter of the newest id announced. Thread-safe: the commit
/// thread announces, any thread asks.
class StandInCounter {
 public:
  /// Every id made from now on has a later counter than a throwaway one made
  /// here: until publish() has one of them, they are all not yet announced.
  StandInCounter()
      : announced_(chat::made_here_counter(chat::make_message_id(chat::now_ms())).value_or(0)) {}

  /// Made here after the last one announced (the counter wraps: "after" is
  /// less than half the range ahead).
  bool not_yet_announced(const chat::Message& message) const {
    const auto counter = chat::made_here_counter(message.id);
    if (!counter) return false;  // another instance's, or this one's before a restart
    const std::uint32_t ahead = (*counter - announced_.load()) & kMask;
    return ahead != 0 && ahead < kHalf;
  }

  /// A committed batch, once every message of it is offered to the sequencer.
  /// It comes in seq order, which is not its id order (a batch's entries are
  /// made chat by chat, and the store may move one to a later reservation):
  /// the counter moves past the whole batch at once, so that no
  /// message of it counts as announced before it is.
  void announce(std::span<const chat::MessagePtr> batch) {
    std::uint32_t newest = announced_.load();
    for (const auto& message : batch) {
      const auto counter = chat::made_here_counter(message->id);
      if (counter && ((*counter - newest) & kMask) < kHalf) newest = *counter;
    }
    announced_ = newest;
  }

 private:
  static constexpr std::uint32_t kMask = 0xFFFFFF;
  static constexpr std::uint32_t kHalf = 0x800000;

  /// Id counter of the newest message of this instance publish() was given.
  std::atomic<std::uint32_t> announced_;
};

}  // namespace chatd::fanout::redis
