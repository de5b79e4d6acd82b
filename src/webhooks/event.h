#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "chat/message.h"
#include "store/outbox.h"

namespace chatd::webhooks {

/// One webhook event, as it is POSTed on every attempt (docs/webhooks.md).
struct Event {
  std::string id;    ///< "evt_<message id>_offline": stable across attempts and restarts.
  std::string type;  ///< "message.offline", "message.created".
  chat::ChatKey chat;
  std::uint64_t seq = 0;
  std::uint8_t bit = 0;  ///< The Message::hooks bit it settles, or store::kHookRead.
  std::string reader;    ///< message.read: whose receipt.
  std::string body;      ///< The JSON body, the same on every attempt.
};

/// The event of `bit` (store::kHookCreated or kHookOffline) of a committed message.
Event message_event(const chat::Message& message, std::uint8_t bit, bool include_text);

/// The message.read event of a receipt that moved forward.
Event read_event(const store::PendingRead& read);

/// "message.created", "message.offline", "message.read".
std::string_view event_type(std::uint8_t bit);

/// The Chatd-Signature header value of `body` signed at `unix_seconds`:
/// "t=<unix_seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
std::string signature(std::string_view secret, std::int64_t unix_seconds, std::string_view body);

}  // namespace chatd::webhooks
