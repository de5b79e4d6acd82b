#pragma once

#include <memory>
#include <span>
#include <string>

#include "chat/message.h"

namespace chatd::fanout {

/// Carries committed messages to every connection of their chat, wherever it
/// is. The local implementation hands them to this process's hub; a Redis
/// implementation (REDIS_URL) also reaches the other instances.
class Fanout {
 public:
  virtual ~Fanout() = default;

  /// Called by the store on its commit thread, once per committed batch, in
  /// commit order: per chat, messages arrive in sequence order.
  virtual void publish(std::span<const chat::MessagePtr> batch) = 0;

  /// Carries an event of a chat (typing, presence, read receipt: a v2 frame,
  /// already serialized) to its connections but `origin`. Best effort.
  virtual void publish_event(const chat::ChatKey& chat, chat::ConnectionId origin,
                             std::shared_ptr<const std::string> frame) = 0;
};

}  // namespace chatd::fanout
