#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace chatd::chat {
class Hub;
}
namespace chatd::store {
class Store;
class Maintainer;
}  // namespace chatd::store
namespace chatd::users {
class UserDirectory;
}
namespace chatd::metrics {
class ChatdMetrics;
}
namespace chatd::auth {
class TokenVerifier;
}
namespace chatd::fanout {
class Fanout;
}
namespace chatd::webhooks {
class Dispatcher;
}

namespace chatd::net {

class SessionRegistry;
class ConnectionLimits;
class CallerRateLimits;
class StoreCallBudget;

/// Limits of one connection. Each default says why it has its value.
struct SessionOptions {
  /// Last messages sent on connect: enough to fill a screen, cheap to read.
  std::size_t history_limit = 100;
  /// Largest frame read; a larger one closes the connection with 1009.
  std::size_t max_message_bytes = 64 * 1024;
  /// Longest message text; longer ones get an error frame.
  std::size_t max_text_bytes = 16 * 1024;
  /// Bytes queued for one slow receiver before it is closed with 1008: about
  /// a thousand typical messages, so a phone on a bad link survives a burst.
  std::size_t send_queue_max_bytes = 1024 * 1024;
  /// How long the replay (history, resume, a history page) may wait for room
  /// in a full send queue before the client is closed with 1008, as a slow
  /// live reader is: by default the idle timeout, the time chatd already
  /// gives a client that answers nothing.
  std::chrono::milliseconds send_stall_timeout{60'000};
  /// Store calls (commits, receipts) one connection may have waiting; past
  /// it chatd stops reading that connection (TCP backpressure) until the
  /// store answers. 256 keeps a fast sender's pipeline full (a group commit
  /// takes everything queued) while one connection holds at most
  /// 256 × MAX_TEXT_BYTES in the store's queue.
  std::size_t max_store_calls = 256;
  /// Store calls all connections together may have waiting (MAX_STORE_CALLS);
  /// past it every connection that calls the store stops reading until the
  /// store answers (StoreCallBudget). Half of STORE_MAX_QUEUED_APPENDS, so a
  /// slow store slows its senders down long before its queue refuses them.
  std::size_t max_store_calls_total = 50'000;
  /// Largest HTTP request header block; chatd's requests are small.
  std::size_t max_header_bytes = 8 * 1024;
  /// Largest HTTP request body.
  std::size_t max_body_bytes = 64 * 1024;
  /// Messages a connection may send a second, and at once (0 = no limit):
  /// more than a person types, less than a script flooding a chat.
  double messages_per_second = 20;
  double message_burst = 50;
  /// Frames refused for the rate before the connection is closed with 4429:
  /// a client that ignores rate_limited errors is a flood, not a person.
  double rate_limit_strikes = 20;
  /// Time to send a complete HTTP request and finish the WebSocket handshake.
  std::chrono::milliseconds handshake_timeout{10'000};
  /// A connection silent this long is pinged once and closed if still silent.
  std::chrono::milliseconds idle_timeout{60'000};
  /// EDIT_WINDOW_SECONDS: how long after sending a message may be edited; 0 = always.
  std::chrono::milliseconds edit_window{0};
  /// Origins allowed to open WebSockets; empty = any (see docs/security.md).
  std::vector<std::string> allowed_origins;
};

/// What sessions need from the rest of chatd, wired once in app/.
struct Services {
  chat::Hub& hub;
  /// Events of a chat (v2 typing, presence, receipts) go out through it, to
  /// this instance's hub and, with Redis, to the others.
  fanout::Fanout& fanout;
  store::Store& store;
  users::UserDirectory& users;
  SessionRegistry& registry;
  ConnectionLimits& limits;
  const SessionOptions& options;
  const std::atomic<bool>& draining;
  metrics::ChatdMetrics& metrics;
  /// Checks client tokens when SECRET_KEY is set; null = no authentication.
  const auth::TokenVerifier* tokens;
  /// Answers /metrics: renders the registry (gauges read at scrape time).
  std::function<std::string()> render_metrics;
  /// The user-search service's state for /readyz: "ok", "unavailable" or "off".
  std::function<std::string_view()> users_state;
  /// Messages a second per REST caller.
  CallerRateLimits& rest_limits;
  /// Sends webhook events (WEBHOOK_URL); null = none.
  webhooks::Dispatcher* webhooks = nullptr;
  /// ADMIN_TOKEN; empty = no admin API.
  std::string_view admin_token;
  /// Runs erasure and export for the admin API (and retention on its own).
  store::Maintainer* maintainer = nullptr;
  /// The bound on store calls of all connections; null = none.
  StoreCallBudget* store_budget = nullptr;
};

}  // namespace chatd::net
