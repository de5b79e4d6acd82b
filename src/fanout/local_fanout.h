#pragma once

#include "chat/hub.h"
#include "fanout/fanout.h"

namespace chatd::fanout {

/// Single-instance fan-out: straight into the local hub.
class LocalFanout final : public Fanout {
 public:
  explicit LocalFanout(chat::Hub& hub) : hub_(hub) {}

  void publish(std::span<const chat::MessagePtr> batch) override {
    for (const auto& message : batch) hub_.deliver(message);
  }

  void publish_event(const chat::ChatKey& chat, chat::ConnectionId origin,
                     std::shared_ptr<const std::string> frame) override {
    hub_.notify(chat, origin, frame);
  }

 private:
  chat::Hub& hub_;
};

}  // namespace chatd::fanout
