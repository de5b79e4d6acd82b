#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "store/outbox.h"

namespace chatd::webhooks {

/// The WEBHOOK_* settings (docs/webhooks.md). Each default says why it has its value.
struct WebhookOptions {
  /// WEBHOOK_URL, http:// or https://; empty: no webhooks.
  std::string url;
  /// WEBHOOK_SECRET: the HMAC key of Chatd-Signature; at least kMinSecretBytes.
  std::string secret;
  /// WEBHOOK_EVENTS as Message::hooks bits (store::kHookCreated, kHookOffline):
  /// by default only what a push service needs.
  std::uint8_t message_events = store::kHookOffline;
  /// WEBHOOK_EVENTS lists message.read.
  bool read_events = false;
  /// WEBHOOK_INCLUDE_TEXT: false leaves the text out of every event (a push
  /// service may not need to see what people write).
  bool include_text = true;
  /// One POST's whole time: a receiver that is slower is retried, so it must
  /// answer quickly and do its work afterwards.
  std::chrono::milliseconds timeout{5000};
  /// POSTs at once, each for another chat (a chat has one at a time, for its
  /// order): enough to hide a receiver's latency, few enough not to flood it.
  std::size_t max_in_flight = 8;
  /// Attempts of one event before it is kept as failed: with the default
  /// backoff, 15 attempts span about 20 minutes of a receiver being down
  /// (0.5 s doubling to the 5-minute cap), past which a push is stale anyway.
  std::uint32_t max_attempts = 15;
  /// The wait before attempt n+1: min(max, min × 2^(n-1)) × a random factor in [0.5, 1].
  std::chrono::milliseconds backoff_min{500};
  std::chrono::milliseconds backoff_max{300'000};
  /// With several instances on one MongoDB, one sends; it renews its lease
  /// every third of this, and another takes over this long after it died.
  std::chrono::milliseconds lease{10'000};
  /// Extra PEM trust anchors for https; the system's are always used.
  std::string ca_file;

  bool enabled() const { return !url.empty(); }
};

inline constexpr std::size_t kMinSecretBytes = 16;

/// Parses WEBHOOK_EVENTS ("message.offline,message.created") into `options`;
/// returns the name it does not know, or nullopt.
std::optional<std::string> parse_events(std::string_view list, WebhookOptions& options);

/// Why `options` cannot be used (naming the setting), or nullopt.
std::optional<std::string> validate(const WebhookOptions& options);

}  // namespace chatd::webhooks
