#pragma once

#include <string>
#include <unordered_set>

#include "chat/chat_key.h"
#include "fanout/chat_sequencer.h"
#include "fanout/redis/redis_connection.h"
#include "fanout/redis/store_catch_up.h"

namespace chatd::fanout::redis {

/// The chat channels this instance is subscribed to, on the subscriber
/// connection: one per chat it follows (a chat with a local connection).
///
/// A chat's baseline is read from the store once its subscription is
/// confirmed (nothing committed after that can pass both), or after a second
/// without a confirmation (a stalled Redis must not hold local messages).
/// After the connection was lost, every followed chat is subscribed again and
/// re-read from its last delivered seq.
///
/// On the fan-out's strand. SUBSCRIBE and UNSUBSCRIBE are never dropped: at
/// most one of each per chat is in flight (an UNSUBSCRIBE's answer is awaited
/// before the chat is subscribed again), so what waits is bounded by the chats
/// followed and left meanwhile; past REDIS_MAX_PENDING_BYTES the connection
/// starts over (RedisConnection).
class Subscriptions {
 public:
  Subscriptions(RedisConnection::Strand strand, RedisConnection& subscriber,
                const ChatSequencer& sequencer, StoreCatchUp& catch_up);

  /// The sequencer follows `chat` now / no longer.
  void follow(const chat::ChatKey& chat);
  void unfollow(const chat::ChatKey& chat);

  /// The subscriber connection is up (again) / lost.
  void on_up();
  void on_down();
  /// Redis confirmed a SUBSCRIBE / an UNSUBSCRIBE of `chat`'s channel.
  void confirmed(const chat::ChatKey& chat, const std::string& channel);
  void unsubscribed(const chat::ChatKey& chat, const std::string& channel);

 private:
  RedisConnection::Strand strand_;
  RedisConnection& subscriber_;
  const ChatSequencer& sequencer_;
  StoreCatchUp& catch_up_;
  std::unordered_set<std::string> subscribed_;     ///< channels SUBSCRIBEd on this connection
  std::unordered_set<std::string> confirmed_;      ///< and of those, the ones Redis confirmed
  std::unordered_set<std::string> unsubscribing_;  ///< UNSUBSCRIBEd, answer not yet come
};

}  // namespace chatd::fanout::redis
