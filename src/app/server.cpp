#include "app/server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <future>
#include <stdexcept>

#include "app/store_factory.h"
#include "auth/token_verifier.h"
#include "fanout/local_fanout.h"
#include "fanout/redis/redis_fanout.h"
#include "net/listener.h"
#include "users/cached_user_directory.h"
#include "users/observed_user_directory.h"
#include "users/open_user_directory.h"
#include "users/user_search_client.h"
#include "util/thread_name.h"
#include "webhooks/hooking_store.h"

namespace chatd::app {
namespace asio = boost::asio;

namespace {

// One core is left to the store's writer thread, which is busy whenever
// messages flow: with as many I/O threads as cores, the three threads of a
// 2-core machine took turns on two cores. bench/ab, 2 cores, 100 chats, 3
// interleaved pairs, one I/O thread against two: server CPU per message 0.81x
// at 5,000 msg/s, 0.83x at 10,000, 0.90x at 20,000, context switches per
// message 0.56x to 0.85x; saturation 0.98x msg/s (within the noise).
unsigned thread_count(const Config& c) {
  if (c.threads != 0) return c.threads;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  return std::max(1u, cores - 1);
}

}  // namespace

Server::Server(const Config& config)
    : config_(config),
      io_(static_cast<int>(thread_count(config))),
      connection_limits_(config.connections),
      rest_limits_(config.session.messages_per_second, config.session.message_burst),
      store_budget_(config.session.max_store_calls_total) {
  // MongoDB with MONGO_URI, else SQLite (store_factory.cpp). The commit
  // listener runs only once the server serves, when fanout_ is set.
  store_ = make_store(
      config_,
      [this](std::span<const chat::MessagePtr> batch) {
        metrics_.messages_committed.inc(batch.size());
        fanout_->publish(batch);
        if (webhooks_ && std::any_of(batch.begin(), batch.end(),
                                     [](const auto& message) { return message->hooks != 0; })) {
          webhooks_->wake();
        }
      },
      [this](std::size_t messages, std::chrono::nanoseconds took, bool) {
        metrics_.batch_size.observe(static_cast<double>(messages));
        metrics_.commit_seconds.observe(std::chrono::duration<double>(took).count());
      });
  if (!config_.redis) {
    fanout_ = std::make_unique<fanout::LocalFanout>(hub_);
  } else {
    fanout_ = std::make_unique<fanout::redis::RedisFanout>(io_, hub_, *store_, metrics_registry_,
                                                           *config_.redis);
  }

  if (config_.webhooks.enabled()) {
    hooking_store_ = std::make_unique<webhooks::HookingStore>(*store_, *fanout_,
                                                              config_.webhooks.message_events);
    try {
      webhooks_ =
          std::make_unique<webhooks::Dispatcher>(io_, *store_, config_.webhooks, metrics_registry_,
                                                 "chatd-" + chat::make_message_id(chat::now_ms()));
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(e.what());
    }
  }

  const users::CachedUserDirectory* user_cache = nullptr;
  if (config_.user_search.url.empty()) {
    users_ = std::make_unique<users::OpenUserDirectory>(io_.get_executor());
    spdlog::warn("USER_SEARCH_URL is not set: every well-formed username is accepted");
  } else {
    user_source_ = std::make_unique<users::UserSearchClient>(io_, config_.user_search);
    user_observer_ = std::make_unique<users::ObservedUserDirectory>(
        *user_source_, [&histogram = metrics_.user_lookup_seconds](users::UserStatus,
                                                                   std::chrono::nanoseconds took) {
          histogram.observe(std::chrono::duration<double>(took).count());
        });
    auto cached = std::make_unique<users::CachedUserDirectory>(io_.get_executor(), *user_observer_,
                                                               config_.user_cache);
    user_cache = cached.get();
    users_ = std::move(cached);
    spdlog::info("users: verified by {}", config_.user_search.url);
  }
  if (config_.tokens.secret.empty()) {
    spdlog::warn("SECRET_KEY is not set: clients are not authenticated (any sender of a chat)");
  } else {
    tokens_ = std::make_unique<auth::TokenVerifier>(config_.tokens);
    spdlog::info("auth: every connection needs an HS256 token signed with SECRET_KEY");
  }
  if (config_.session.allowed_origins.empty()) {
    spdlog::warn("ALLOWED_ORIGINS is not set: web pages of any origin may connect");
  }

  boost::system::error_code error;
  const auto address = asio::ip::make_address(config_.host, error);
  if (error) throw std::runtime_error("HOST '" + config_.host + "' is not an IP address");
  register_gauges(user_cache);
  store::Store& sessions_store = hooking_store_ ? *hooking_store_ : *store_;
  maintainer_ = std::make_unique<store::Maintainer>(
      sessions_store, config_.retention,
      [this](std::size_t removed) { metrics_.retention_purged.inc(removed); });
  if (config_.retention.keep.count() > 0) {
    spdlog::info("retention: messages older than {} s are removed",
                 config_.retention.keep.count() / 1000);
  }
  services_.emplace(net::Services{hub_, *fanout_, sessions_store, *users_, registry_,
                                  connection_limits_, config_.session, draining_, metrics_,
                                  tokens_.get(), [this] { return metrics_registry_.render(); },
                                  [this] { return users_ready(); }, rest_limits_, webhooks_.get(),
                                  config_.admin_token, maintainer_.get(), &store_budget_});
  try {
    listener_ = std::make_shared<net::Listener>(io_, asio::ip::tcp::endpoint(address, config_.port),
                                                *services_);
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("cannot listen on " + config_.host + ":" +
                             std::to_string(config_.port) + ": " + e.code().message());
  }
}

Server::~Server() {
  io_.stop();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  // Sessions still open after a drain's deadline end here, while the parts
  // they leave (hub, registry, fan-out, metrics) are still alive.
  io_.destroy_pending_handlers();
}

std::string_view Server::users_ready() const {
  if (!user_observer_) return "off";
  // "Recently successful": a service that answered within the last 30 s is
  // taken as reachable even if its very last lookup failed.
  constexpr auto grace = std::chrono::seconds(30);
  user_observer_->probe_if_unhealthy(grace);
  return user_observer_->healthy(grace) ? "ok" : "unavailable";
}

void Server::register_gauges(const users::CachedUserDirectory* cache) {
  auto& r = metrics_registry_;
  r.gauge_callback("chatd_connections_open", "Open WebSocket connections.",
                   [this] { return static_cast<double>(registry_.size()); });
  r.gauge_callback("chatd_chats_active", "Chats with at least one local connection.",
                   [this] { return static_cast<double>(hub_.active_chats()); });
  r.gauge_callback("chatd_store_ready", "1 when the last store operation succeeded.",
                   [this] { return store_->ready() ? 1.0 : 0.0; });
  // The store's two queues (STORE_MAX_QUEUED_APPENDS, STORE_MAX_QUEUED_READS):
  // how deep they are now, and how many calls they refused with overloaded.
  struct StoreQueue {
    const char* label;
    std::size_t store::QueueStats::*queued;
    std::uint64_t store::QueueStats::*refused;
  };
  for (const StoreQueue queue :
       {StoreQueue{"appends", &store::QueueStats::queued_appends,
                   &store::QueueStats::refused_appends},
        StoreQueue{"reads", &store::QueueStats::queued_reads, &store::QueueStats::refused_reads}}) {
    r.gauge_callback("chatd_store_queued", "Store calls waiting for a store thread, by queue.",
                     [this, queue] { return double(store_->queue_stats().*queue.queued); },
                     {{"queue", queue.label}});
    r.counter_callback("chatd_store_refused_total",
                       "Store calls answered overloaded because their queue was full.",
                       [this, queue] { return double(store_->queue_stats().*queue.refused); },
                       {{"queue", queue.label}});
  }
  r.gauge_callback("chatd_store_calls_in_flight",
                   "Store calls of all connections waiting for an answer (MAX_STORE_CALLS).",
                   [this] { return double(store_budget_.in_flight()); });
  r.gauge_callback("chatd_connections_waiting_for_store",
                   "Connections not read because the store calls of all are at MAX_STORE_CALLS.",
                   [this] { return double(store_budget_.waiting()); });
  if (!config_.mongo.uri.empty()) {
    // Round trips of the write path: their ratio is MongoDB commands per
    // group commit (docs/scaling.md, "Seq allocation").
    r.counter_callback("chatd_mongo_write_batches_total", "Group commits written to MongoDB.",
                       [this] { return double(store_->queue_stats().write_batches); });
    r.counter_callback("chatd_mongo_write_commands_total",
                       "Commands the MongoDB writer sent for its group commits.",
                       [this] { return double(store_->queue_stats().write_commands); });
  }
  r.gauge_callback("chatd_draining", "1 while chatd drains for shutdown.",
                   [this] { return draining_.load() ? 1.0 : 0.0; });
  r.gauge("chatd_config_info", "Configuration chatd runs with.",
          {{"store", config_.mongo.uri.empty() ? "sqlite" : "mongodb"},
           {"user_search", config_.user_search.url.empty() ? "off" : "on"},
           {"auth", config_.tokens.secret.empty() ? "off" : "jwt"},
           {"history_limit", std::to_string(config_.session.history_limit)},
           {"threads", std::to_string(thread_count(config_))}})
      .set(1);
  if (cache == nullptr) return;
  r.gauge_callback("chatd_user_lookups_waiting",
                   "Lookups waiting for a free connection to the user-search service.",
                   [this] { return double(user_source_->waiting()); });
  const char* lookups = "chatd_user_lookups_total";
  const char* help = "Username verifications, by outcome (cache hit, miss, upstream error).";
  r.counter_callback(lookups, help, [cache] { return double(cache->stats().hits); },
                     {{"result", "hit"}});
  r.counter_callback(lookups, help, [cache] { return double(cache->stats().misses); },
                     {{"result", "miss"}});
  r.counter_callback(lookups, help, [cache] { return double(cache->stats().upstream_errors); },
                     {{"result", "error"}});
}

int Server::run() {
  std::promise<int> stop_signal;
  asio::signal_set signals(io_, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& error, int number) {
    if (!error) stop_signal.set_value(number);
  });

  listener_->start();
  const auto endpoint = listener_->local_endpoint();
  const unsigned threads = thread_count(config_);
  for (unsigned i = 0; i < threads; ++i)
    threads_.emplace_back([this] {
      util::name_this_thread("chatd-io");
      io_.run();
    });
  fanout_->start();
  if (webhooks_) webhooks_->start();
  spdlog::info("chatd {} listening on http://{}:{} ({} I/O threads)", CHATD_VERSION,
               endpoint.address().to_string(), endpoint.port(), threads);

  const int number = stop_signal.get_future().get();
  spdlog::info("received {}, draining (at most {} ms)", number == SIGTERM ? "SIGTERM" : "SIGINT",
               config_.shutdown_timeout_ms);
  // A second signal means "now": exit without waiting for the drain.
  signals.async_wait([](const boost::system::error_code& error, int) {
    if (error) return;
    spdlog::warn("second signal: exiting before the drain completed");
    std::_Exit(1);
  });
  drain();
  return 0;
}

void Server::drain() {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.shutdown_timeout_ms);
  // 1. No new connections, no new messages (frames read from now on get an
  //    error frame saying nothing was stored).
  draining_.store(true);
  listener_->stop();
  // 2. Commit everything already accepted; the commits are delivered into the
  //    receivers' send queues before the store returns.
  store_->drain();
  // 3. Each session sends what it has queued, then closes with 1001.
  registry_.close_all();
  if (!registry_.wait_empty_until(deadline)) {
    spdlog::warn("drain: {} sessions still open at the deadline; closing them", registry_.size());
  }
  if (webhooks_) webhooks_->stop();  // its POSTs in flight end on the I/O threads
  fanout_->stop();
  io_.stop();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  spdlog::info("drained; exiting");
}

}  // namespace chatd::app
