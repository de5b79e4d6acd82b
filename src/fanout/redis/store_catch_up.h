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
struct HistoryPage;
}  // namespace chatd::store

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
    /// How old the entries after a hole in the store must be before the hole
    /// is sealed with fillers (MONGO_SEAL_SECONDS).
    std::chrono::milliseconds seal_after{60'000};
  };

  StoreCatchUp(RedisConnection::Strand strand, store::Store& store, ChatSequencer& sequencer,
               metrics::Counter& gap_fills, metrics::Counter& sealed, Options options);

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
  /// A page read after `after_seq` that does not start at the next seq: the
  /// store itself has a hole there (an instance died between reserving the
  /// seqs and writing them). Once the entry after it is older than
  /// seal_after, no write of those seqs can still be on its way (an insert
  /// outlives no socket timeout), and fillers are written there; the unique
  /// index refuses a filler where an entry came after all.
  void seal_hole(const chat::ChatKey& chat, std::uint64_t after_seq,
                 const store::HistoryPage& page);

  RedisConnection::Strand strand_;
  store::Store& store_;
  ChatSequencer& sequencer_;
  metrics::Counter& gap_fills_;
  metrics::Counter& sealed_;
  Options options_;
  boost::asio::steady_timer gap_timer_;
};

}  // namespace chatd::fanout::redis
