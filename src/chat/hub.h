#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "chat/chat_key.h"
#include "chat/message.h"

namespace chatd::chat {

/// A local connection that wants a chat's committed messages.
class Subscriber {
 public:
  virtual ~Subscriber() = default;

  virtual ConnectionId connection_id() const = 0;
  virtual const std::string& user() const = 0;

  /// Called from any thread, once per message, in the chat's sequence order.
  /// `frame` is the serialized frame shared by every receiver. Must not block.
  virtual void deliver(const MessagePtr& message,
                       const std::shared_ptr<const std::string>& frame) = 0;
};

/// Maps each chat to its local connections.
///
/// There is no global lock: chats are spread over shards by hash, each with
/// its own mutex held only to copy a chat's receivers, never while sending.
/// Subscribers are held weakly; a session leaves in exactly one place (its end).
class Hub {
 public:
  Hub() = default;
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  void join(const ChatKey& chat, const std::shared_ptr<Subscriber>& subscriber);
  void leave(const ChatKey& chat, const Subscriber& subscriber);

  /// Hands a committed message to every local connection of its chat except
  /// the one it came from (v1: no echo; v2: the sender gets an ack instead).
  void deliver(const MessagePtr& message);

  /// How many local connections `user` has in `chat`.
  std::size_t connections_of(const ChatKey& chat, const std::string& user) const;
  std::size_t active_chats() const;
  std::size_t connections() const;

 private:
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, std::vector<std::weak_ptr<Subscriber>>> chats;
  };
  static constexpr std::size_t kShards = 64;

  Shard& shard_of(const ChatKey& chat) const;
  std::vector<std::shared_ptr<Subscriber>> receivers(const ChatKey& chat) const;

  mutable std::array<Shard, kShards> shards_;
};

}  // namespace chatd::chat
