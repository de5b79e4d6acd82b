#include "app/server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <future>
#include <stdexcept>

#include "fanout/local_fanout.h"
#include "net/listener.h"
#include "store/sqlite/sqlite_store.h"
#include "users/cached_user_directory.h"
#include "users/open_user_directory.h"
#include "users/user_search_client.h"

namespace chatd::app {
namespace asio = boost::asio;

namespace {

net::SessionOptions session_options(const Config& c) {
  net::SessionOptions o;
  o.history_limit = c.history_limit;
  o.max_message_bytes = c.max_message_bytes;
  o.max_text_bytes = c.max_text_bytes;
  o.send_queue_max_bytes = c.send_queue_max_bytes;
  o.handshake_timeout = std::chrono::milliseconds(c.handshake_timeout_ms);
  o.idle_timeout = std::chrono::milliseconds(c.idle_timeout_ms);
  o.allowed_origins = c.allowed_origin_list();
  return o;
}

unsigned thread_count(const Config& c) {
  if (c.threads != 0) return c.threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

Server::Server(const Config& config)
    : config_(config),
      session_options_(session_options(config)),
      io_(static_cast<int>(thread_count(config))) {
  if (!config_.mongo_uri.empty()) {
    throw std::runtime_error(
        "MONGO_URI is set, but this build of chatd has no MongoDB store yet; unset MONGO_URI to "
        "use the embedded SQLite store (SQLITE_PATH)");
  }
  if (!config_.redis_url.empty()) {
    throw std::runtime_error(
        "REDIS_URL is set, but this build of chatd cannot fan out through Redis yet; unset it to "
        "run a single instance");
  }
  if (!config_.secret_key.empty()) {
    throw std::runtime_error(
        "SECRET_KEY is set, but this build of chatd cannot check tokens yet; refusing to start "
        "without the authentication you asked for (unset SECRET_KEY to run without tokens)");
  }

  fanout_ = std::make_unique<fanout::LocalFanout>(hub_);
  store::sqlite::SqliteOptions sqlite;
  sqlite.path = config_.sqlite_path;
  sqlite.sync = config_.sqlite_sync == "full" ? store::sqlite::SyncMode::full
                                              : store::sqlite::SyncMode::normal;
  store_ = std::make_unique<store::sqlite::SqliteStore>(
      sqlite, [fanout = fanout_.get()](std::span<const chat::MessagePtr> batch) {
        fanout->publish(batch);
      });
  spdlog::info("store: SQLite at {} (synchronous={})", config_.sqlite_path, config_.sqlite_sync);

  if (config_.user_search_url.empty()) {
    users_ = std::make_unique<users::OpenUserDirectory>(io_.get_executor());
    spdlog::warn("USER_SEARCH_URL is not set: every well-formed username is accepted");
  } else {
    users::UserSearchOptions search;
    search.url = config_.user_search_url;
    search.timeout = std::chrono::milliseconds(config_.user_search_timeout_ms);
    search.max_in_flight = config_.user_search_max_in_flight;
    user_source_ = std::make_unique<users::UserSearchClient>(io_, search);
    users::UserCacheOptions cache;
    cache.positive_ttl = std::chrono::milliseconds(config_.user_cache_ttl_ms);
    cache.negative_ttl = std::chrono::milliseconds(config_.user_cache_negative_ttl_ms);
    cache.max_entries = config_.user_cache_max_entries;
    users_ = std::make_unique<users::CachedUserDirectory>(io_.get_executor(), *user_source_, cache);
    spdlog::info("users: verified by {}", config_.user_search_url);
  }
  spdlog::warn("SECRET_KEY is not set: clients are not authenticated (any sender of a chat)");
  if (session_options_.allowed_origins.empty()) {
    spdlog::warn("ALLOWED_ORIGINS is not set: web pages of any origin may connect");
  }

  boost::system::error_code error;
  const auto address = asio::ip::make_address(config_.host, error);
  if (error) throw std::runtime_error("HOST '" + config_.host + "' is not an IP address");
  const net::Services services{hub_, *store_, *users_, registry_, session_options_, draining_};
  try {
    listener_ = std::make_shared<net::Listener>(io_, asio::ip::tcp::endpoint(address, config_.port),
                                                services);
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
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { io_.run(); });
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
  io_.stop();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  spdlog::info("drained; exiting");
}

}  // namespace chatd::app
