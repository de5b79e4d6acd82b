#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "app/config.h"
#include "chat/hub.h"
#include "fanout/fanout.h"
#include "metrics/chatd_metrics.h"
#include "metrics/registry.h"
#include "net/caller_rate_limits.h"
#include "net/connection_limits.h"
#include "net/services.h"
#include "net/session_registry.h"
#include "net/store_call_budget.h"
#include "store/maintainer.h"
#include "store/store.h"
#include "users/user_directory.h"
#include "users/user_search_client.h"
#include "webhooks/dispatcher.h"

namespace chatd::net {
class Listener;
}
namespace chatd::auth {
class TokenVerifier;
}
namespace chatd::users {
class CachedUserDirectory;
class ObservedUserDirectory;
}  // namespace chatd::users

namespace chatd::app {

/// The I/O context, which can also destroy the handlers left in it when it
/// stops: the sessions they hold leave the hub and the registry in their
/// destructors, so that must happen while those still exist, not in the
/// context's own destructor after them.
class IoContext final : public boost::asio::io_context {
 public:
  using boost::asio::io_context::io_context;
  /// Once stopped and its threads joined: destroys every handler still
  /// queued or pending (Asio lets the objects they used outlive this).
  void destroy_pending_handlers() { shutdown(); }
};

/// chatd assembled: with store_factory.cpp, the place that names concrete classes. Members are
/// declared in dependency order, so they are destroyed users-first.
class Server {
 public:
  /// Builds every part and binds the port. Throws std::runtime_error with a
  /// message saying what to fix when the configuration cannot work.
  explicit Server(const Config& config);
  ~Server();

  /// Serves until SIGTERM or SIGINT, then drains. Returns the exit code.
  int run();

 private:
  void drain();
  std::string_view users_ready() const;
  void register_gauges(const users::CachedUserDirectory* cache);

  Config config_;
  IoContext io_;
  std::atomic<bool> draining_{false};
  metrics::Registry metrics_registry_;
  metrics::ChatdMetrics metrics_{metrics_registry_};
  chat::Hub hub_;
  net::SessionRegistry registry_;
  net::ConnectionLimits connection_limits_;
  net::CallerRateLimits rest_limits_;
  /// MAX_STORE_CALLS: outlives every session (declared before the store).
  net::StoreCallBudget store_budget_;
  std::unique_ptr<fanout::Fanout> fanout_;
  std::unique_ptr<store::Store> store_;
  /// With WEBHOOK_URL: the store as sessions see it (messages carry their
  /// events), and the sender of the outbox.
  std::unique_ptr<store::Store> hooking_store_;
  std::unique_ptr<webhooks::Dispatcher> webhooks_;
  /// Retention, and the admin API's erasures and exports.
  std::unique_ptr<store::Maintainer> maintainer_;
  std::unique_ptr<users::UserSearchClient> user_source_;
  std::unique_ptr<users::ObservedUserDirectory> user_observer_;
  std::unique_ptr<users::UserDirectory> users_;
  std::unique_ptr<auth::TokenVerifier> tokens_;
  /// What every connection refers to (not a copy per connection).
  std::optional<net::Services> services_;
  std::shared_ptr<net::Listener> listener_;
  std::vector<std::thread> threads_;
};

}  // namespace chatd::app
