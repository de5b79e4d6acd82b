#pragma once

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "chat/chat_key.h"
#include "fanout/chat_sequencer.h"
#include "fanout/redis/redis_connection.h"

namespace chatd::metrics {
class Counter;
}
namespace chatd::store {
class Store;
}

namespace chatd::fanout::redis {

/// Reads from the store what Redis did not bring, and hands it to the
/// sequencer: the baseline of a chat this instance starts following, the
/// messages after a seq (a gap, or every followed chat after an outage), and
/// every gap the sequencer reports overdue (a timer, every quarter of the
/// hold). Redis Pub/Sub keeps nothing; the store has every committed message,
/// so this is what makes a lost publish cost time and not messages.
///
/// Runs on the fan-out's strand; store answers come back to it.
class StoreCatchUp {
 public:
  struct Options {
    /// How long a missing seq is waited for before it is read (REDIS_GAP_MS).
    std::chrono::milliseconds gap_hold{200};
    /// Newest messages read as a chat's baseline (RedisFanoutOptions).
    std::size_t sync_messages = 32;
  };

  StoreCatchUp(RedisConnection::Strand strand, store::Store& store, ChatSequencer& sequencer,
               metrics::Counter& gap_fills, Options options);

  /// Starts / stops the gap check. On the strand.
  void start();
  void stop();

  /// Gives a followed chat its baseline (or, when it has one, what came after
  /// its last delivered seq). A failed read is asked again after the hold.
  void sync(const chat::ChatKey& chat);
  /// Reads `chat` after `after_seq`, page by page, into the sequencer.
  void fill(const chat::ChatKey& chat, std::uint64_t after_seq);
  /// Every followed chat with a baseline, after its last delivered seq: what
  /// other instances committed while their publishes could not come.
  void recover_all();

 private:
  void schedule_gap_check();

  RedisConnection::Strand strand_;
  store::Store& store_;
  ChatSequencer& sequencer_;
  metrics::Counter& gap_fills_;
  Options options_;
  boost::asio::steady_timer gap_timer_;
};

}  // namespace chatd::fanout::redis
