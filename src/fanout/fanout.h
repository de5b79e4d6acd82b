#pragma once

#include <span>

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
};

}  // namespace chatd::fanout
