#pragma once

#include <array>
#include <functional>
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

  /// An event of the chat that is not a message (v2: typing, presence, read
  /// receipts): best effort, never stored. Called from any thread; must not
  /// block. v1 connections ignore events.
  virtual void notify(const std::shared_ptr<const std::string>& /*frame*/) {}
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

  /// Returns how many connections the subscriber's user has in the chat now,
  /// this one included (presence: 1 means the user just came online).
  std::size_t join(const ChatKey& chat, const std::shared_ptr<Subscriber>& subscriber);
  /// Returns how many connections the subscriber's user still has in the chat
  /// (presence: 0 means the user just went offline).
  std::size_t leave(const ChatKey& chat, const Subscriber& subscriber);

  /// Hands a committed message to every local connection of its chat except
  /// the one it came from (v1: no echo; v2: the sender gets an ack instead).
  void deliver(const MessagePtr& message);

  /// Hands an event frame to every local connection of the chat but `origin`.
  void notify(const ChatKey& chat, ConnectionId origin,
              const std::shared_ptr<const std::string>& frame);

  /// Called, outside the hub's locks, after a chat gains its first local
  /// connection and after it loses its last one (scale-out subscribes and
  /// unsubscribes there). Calls for one chat may race; the listener asks
  /// has_chat() for the truth. Set once, before any join.
  using InterestListener = std::function<void(const ChatKey&)>;
  void set_interest_listener(InterestListener listener) { interest_ = std::move(listener); }

  /// Whether `chat` has a local connection now.
  bool has_chat(const ChatKey& chat) const;

  /// How many local connections `user` has in `chat`.
  std::size_t connections_of(const ChatKey& chat, const std::string& user) const;
  std::size_t active_chats() const;
  std::size_t connections() const;

 private:
  /// A subscriber as the hub keeps it. Its user and address are copied so
  /// that nothing under a shard's mutex locks the weak_ptr: a strong
  /// reference taken there could be a session's last, and its destructor
  /// leaves the hub, which takes the same mutex.
  struct Entry {
    std::weak_ptr<Subscriber> subscriber;
    const Subscriber* address = nullptr;
    std::string user;
  };
  using Entries = std::vector<Entry>;
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, Entries> chats;
  };
  static constexpr std::size_t kShards = 64;

  Shard& shard_of(const ChatKey& chat) const;
  /// Live connections of `user` in a chat's list; the shard's mutex must be held.
  static std::size_t count_locked(const Entries& list, const std::string& user);
  std::vector<std::shared_ptr<Subscriber>> receivers(const ChatKey& chat) const;

  mutable std::array<Shard, kShards> shards_;
  InterestListener interest_;
};

}  // namespace chatd::chat
