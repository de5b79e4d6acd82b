#pragma once

#include "chat/frames_v2.h"
#include "chat/hub.h"
#include "fanout/fanout.h"

namespace chatd::fanout {

/// Single-instance fan-out: straight into the local hub.
class LocalFanout final : public Fanout {
 public:
  explicit LocalFanout(chat::Hub& hub) : hub_(hub) {}

  /// Nothing to connect to: the hub is there from the start.
  void start() override {}
  void stop() override {}

  void publish(std::span<const chat::MessagePtr> batch) override {
    for (const auto& message : batch) hub_.deliver(message);
  }

  void publish_event(const chat::ChatKey& chat, chat::ConnectionId origin,
                     std::shared_ptr<const std::string> frame) override {
    hub_.notify(chat, origin, frame);
  }

  void presence_changed(const chat::ChatKey& chat, chat::ConnectionId origin,
                        const std::string& user, std::size_t local_devices) override {
    hub_.notify(chat, origin,
                std::make_shared<const std::string>(chat::v2::presence_frame(user, local_devices)));
  }

  void devices(const chat::ChatKey& chat, const std::string& user,
               DevicesHandler handler) override {
    handler(hub_.connections_of(chat, user));
  }

  bool devices_answer_at_once() const override { return true; }

  std::string_view state() const override { return "off"; }

 private:
  chat::Hub& hub_;
};

}  // namespace chatd::fanout
