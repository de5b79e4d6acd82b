#include "app/config.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <iostream>
#include <string_view>
#include <vector>

#include "app/dotenv.h"
#include "fanout/redis/redis_url.h"
#include "users/user_search_client.h"
#include "util/header_list.h"

namespace chatd::app {
namespace {

// Registers `--name` bound to `NAME` in the environment.
template <typename T>
CLI::Option* setting(CLI::App& app, const std::string& env, T& value, const std::string& help) {
  std::string flag = "--";
  for (char c : env) flag += c == '_' ? '-' : static_cast<char>(std::tolower(c));
  return app.add_option(flag, value, help)->envname(env)->capture_default_str();
}

// Browser origins from ALLOWED_ORIGINS, comma-separated. Browsers send an
// origin as scheme://host[:port], lower case, with no path: an entry written
// "https://Chat.example.com/" means the same origin.
std::vector<std::string> origin_list(std::string_view setting) {
  std::vector<std::string> origins;
  for (std::string_view item : util::split_header_list(setting)) {
    while (!item.empty() && item.back() == '/') item.remove_suffix(1);
    std::string origin(item);
    std::transform(origin.begin(), origin.end(), origin.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (!origin.empty()) origins.push_back(std::move(origin));
  }
  return origins;
}

// A default duration as its setting writes it, in the setting's unit.
template <typename Rep, typename Period>
unsigned count_of(std::chrono::duration<Rep, Period> duration) {
  return static_cast<unsigned>(duration.count());
}

// A default rate (the token buckets count in double) as its setting writes it.
unsigned whole(double rate) {
  return static_cast<unsigned>(rate);
}

// The settings a flag cannot hold in the part's own type (durations, rates
// kept as double, the origin list, SQLITE_SYNC, REDIS_URL), as they are
// written. Each starts from the part's default, so the default stays there;
// finish() converts them.
struct Written {
  std::string sqlite_sync = store::sqlite::to_string(store::sqlite::SqliteOptions{}.sync);
  // Both backends' queues: whichever MONGO_URI picks.
  unsigned store_max_queued_appends = store::QueueOptions{}.max_queued_appends;
  unsigned store_max_queued_reads = store::QueueOptions{}.max_queued_reads;
  unsigned user_search_timeout_ms = count_of(users::UserSearchOptions{}.timeout);
  unsigned user_cache_ttl_ms = count_of(users::UserCacheOptions{}.positive_ttl);
  unsigned user_cache_negative_ttl_ms = count_of(users::UserCacheOptions{}.negative_ttl);
  unsigned token_leeway_seconds = count_of(auth::TokenOptions{}.leeway);
  std::string allowed_origins;         // unset = any
  unsigned send_stall_timeout_ms = 0;  // 0 = IDLE_TIMEOUT_MS
  unsigned messages_per_second = whole(net::SessionOptions{}.messages_per_second);
  unsigned message_burst = whole(net::SessionOptions{}.message_burst);
  unsigned new_connections_per_ip_per_second =
      whole(net::ConnectionLimitOptions{}.new_per_ip_per_second);
  unsigned handshake_timeout_ms = count_of(net::SessionOptions{}.handshake_timeout);
  unsigned idle_timeout_ms = count_of(net::SessionOptions{}.idle_timeout);
  std::string redis_url;  // unset = one instance, no Redis
  fanout::redis::RedisFanoutOptions redis;
  unsigned redis_gap_ms = count_of(redis.gap_hold);
  unsigned presence_ttl_seconds = count_of(redis.presence_ttl);
  unsigned mongo_seal_seconds = static_cast<unsigned>(
      std::chrono::duration_cast<std::chrono::seconds>(redis.seal_after).count());
  std::string webhook_events = "message.offline";
  unsigned webhook_timeout_ms = count_of(webhooks::WebhookOptions{}.timeout);
  unsigned webhook_backoff_min_ms = count_of(webhooks::WebhookOptions{}.backoff_min);
  unsigned webhook_backoff_max_ms = count_of(webhooks::WebhookOptions{}.backoff_max);
  unsigned webhook_lease_ms = count_of(webhooks::WebhookOptions{}.lease);
  unsigned edit_window_seconds = 0;  // 0 = no limit
  double retention_days = 0;         // 0 = keep forever
  unsigned retention_interval_seconds = 300;
};

// Puts what was written into `c`, the one place settings are converted.
// Returns why the settings cannot work together, or an empty string.
std::string finish(const Written& w, Config& c) {
  if (!w.redis_url.empty() && c.mongo.uri.empty()) {
    return "REDIS_URL is set but MONGO_URI is not. Instances that share chats through Redis must "
           "share one MongoDB store; the embedded SQLite store serves one instance.";
  }
  using store::sqlite::SyncMode;
  c.sqlite.sync = w.sqlite_sync == to_string(SyncMode::full) ? SyncMode::full : SyncMode::normal;
  c.sqlite.max_queued_appends = c.mongo.max_queued_appends = w.store_max_queued_appends;
  c.sqlite.max_queued_reads = c.mongo.max_queued_reads = w.store_max_queued_reads;

  c.user_search.timeout = std::chrono::milliseconds(w.user_search_timeout_ms);
  c.user_cache.positive_ttl = std::chrono::milliseconds(w.user_cache_ttl_ms);
  c.user_cache.negative_ttl = std::chrono::milliseconds(w.user_cache_negative_ttl_ms);
  c.tokens.leeway = std::chrono::seconds(w.token_leeway_seconds);

  c.session.allowed_origins = origin_list(w.allowed_origins);
  c.session.max_text_bytes = std::min(c.session.max_text_bytes, c.session.max_message_bytes);
  c.session.messages_per_second = w.messages_per_second;
  c.session.message_burst = w.message_burst;
  c.session.handshake_timeout = std::chrono::milliseconds(w.handshake_timeout_ms);
  c.session.idle_timeout = std::chrono::milliseconds(w.idle_timeout_ms);
  c.session.send_stall_timeout = w.send_stall_timeout_ms != 0
                                     ? std::chrono::milliseconds(w.send_stall_timeout_ms)
                                     : c.session.idle_timeout;
  c.connections.new_per_ip_per_second = w.new_connections_per_ip_per_second;

  if (!w.redis_url.empty()) {
    c.redis = w.redis;
    c.redis->endpoint = fanout::redis::parse_redis_url(w.redis_url).endpoint;
    c.redis->gap_hold = std::chrono::milliseconds(w.redis_gap_ms);
    c.redis->presence_ttl = std::chrono::seconds(w.presence_ttl_seconds);
    c.redis->seal_after = std::chrono::seconds(w.mongo_seal_seconds);
  }

  if (auto unknown = webhooks::parse_events(w.webhook_events, c.webhooks)) {
    return "WEBHOOK_EVENTS: unknown event '" + *unknown +
           "' (message.offline, message.created, message.read)";
  }
  c.webhooks.timeout = std::chrono::milliseconds(w.webhook_timeout_ms);
  c.webhooks.backoff_min = std::chrono::milliseconds(w.webhook_backoff_min_ms);
  c.webhooks.backoff_max = std::chrono::milliseconds(w.webhook_backoff_max_ms);
  c.webhooks.lease = std::chrono::milliseconds(w.webhook_lease_ms);
  c.session.edit_window = std::chrono::seconds(w.edit_window_seconds);
  c.retention.keep = std::chrono::milliseconds(
      static_cast<std::int64_t>(std::llround(w.retention_days * 86'400'000.0)));
  c.retention.interval = std::chrono::seconds(w.retention_interval_seconds);
  if (auto problem = webhooks::validate(c.webhooks)) return *problem;
  c.sqlite.read_hooks = c.mongo.read_hooks = c.webhooks.enabled() && c.webhooks.read_events;
  return {};
}

}  // namespace

ConfigResult parse_config(int argc, char** argv) {
  std::string dotenv_error;
  if (!load_dotenv(".env", dotenv_error)) {
    std::cerr << "chatd: cannot read .env: " << dotenv_error;
    return {std::nullopt, 2};
  }

  Config c;
  Written w;
  CLI::App app{"chatd: real-time one-to-one chat over WebSocket", "chatd"};
  app.set_version_flag("--version", CHATD_VERSION);
  app.get_formatter()->column_width(44);

  setting(app, "HOST", c.host, "Address to listen on");
  setting(app, "PORT", c.port, "TCP port (0 = any free port)");
  setting(app, "THREADS", c.threads, "I/O threads (0 = one per core but one, at least 1)")
      ->check(CLI::Range(0u, 256u));

  setting(app, "MONGO_URI", c.mongo.uri, "MongoDB URI; unset = embedded SQLite");
  setting(app, "SQLITE_PATH", c.sqlite.path, "SQLite database file");
  setting(app, "SQLITE_SYNC", w.sqlite_sync, "normal: survives crashes; full: power loss too")
      ->check(CLI::IsMember({"normal", "full"}));
  setting(app, "STORE_MAX_QUEUED_APPENDS", w.store_max_queued_appends,
          "Messages waiting for a commit; more are refused with overloaded")
      ->check(CLI::Range(1u, 10'000'000u));
  setting(app, "STORE_MAX_QUEUED_READS", w.store_max_queued_reads,
          "Store reads waiting for a reader thread; more fail with overloaded")
      ->check(CLI::Range(1u, 10'000'000u));

  setting(app, "USER_SEARCH_URL", c.user_search.url,
          "User-search service URL; unset = every well-formed name accepted")
      ->check([](const std::string& url) {
        if (url.empty()) return std::string();
        return users::UserSearchClient::validate_url(url).value_or("");
      });
  setting(app, "USER_SEARCH_TIMEOUT_MS", w.user_search_timeout_ms, "Timeout of one lookup")
      ->check(CLI::Range(1u, 60'000u));
  setting(app, "USER_SEARCH_MAX_IN_FLIGHT", c.user_search.max_in_flight,
          "Lookups running at once; more wait")
      ->check(CLI::Range(1u, 10'000u));
  setting(app, "USER_CACHE_TTL_MS", w.user_cache_ttl_ms, "How long a found user is remembered")
      ->check(CLI::Range(0u, 86'400'000u));
  setting(app, "USER_CACHE_NEGATIVE_TTL_MS", w.user_cache_negative_ttl_ms,
          "How long an unknown user is remembered")
      ->check(CLI::Range(0u, 86'400'000u));
  setting(app, "USER_CACHE_MAX_ENTRIES", c.user_cache.max_entries, "Names kept in the cache")
      ->check(CLI::Range(1u, 100'000'000u));

  setting(app, "SECRET_KEY", c.tokens.secret, "HS256 key for client tokens; unset = no tokens");
  setting(app, "TOKEN_LEEWAY_SECONDS", w.token_leeway_seconds,
          "Clock skew tolerated on a token's exp and nbf")
      ->check(CLI::Range(0u, 300u));
  setting(app, "ALLOWED_ORIGINS", w.allowed_origins,
          "Comma-separated browser origins allowed to connect; unset = any");

  setting(app, "HISTORY_LIMIT", c.session.history_limit, "Messages sent on connect")
      ->check(CLI::Range(0u, 10'000u));
  setting(app, "MAX_MESSAGE_BYTES", c.session.max_message_bytes,
          "Largest frame; larger closes with 1009")
      ->check(CLI::Range(256u, 16u * 1024 * 1024));
  setting(app, "MAX_TEXT_BYTES", c.session.max_text_bytes, "Longest message text")
      ->check(CLI::Range(1u, 16u * 1024 * 1024));
  setting(app, "SEND_QUEUE_MAX_BYTES", c.session.send_queue_max_bytes,
          "Bytes queued to a slow receiver before closing it with 1008")
      ->check(CLI::Range(4096u, 1024u * 1024 * 1024));
  setting(app, "SEND_STALL_TIMEOUT_MS", w.send_stall_timeout_ms,
          "How long a replay may find the send queue full before closing with 1008 "
          "(0 = IDLE_TIMEOUT_MS)")
      ->check(CLI::Range(0u, 86'400'000u));
  setting(app, "MAX_STORE_CALLS_PER_CONNECTION", c.session.max_store_calls,
          "Store calls one connection may have waiting; past it chatd stops reading it")
      ->check(CLI::Range(1u, 100'000u));
  setting(app, "MAX_STORE_CALLS", c.session.max_store_calls_total,
          "Store calls all connections together may have waiting; past it chatd stops reading "
          "every connection that calls the store until it answers")
      ->check(CLI::Range(1u, 10'000'000u));
  setting(app, "MESSAGES_PER_SECOND", w.messages_per_second,
          "Messages one connection may send a second (0 = no limit)")
      ->check(CLI::Range(0u, 1'000'000u));
  setting(app, "MESSAGE_BURST", w.message_burst, "Messages a connection may send at once")
      ->check(CLI::Range(1u, 1'000'000u));
  setting(app, "MAX_CONNECTIONS", c.connections.max_total,
          "WebSocket connections in all (0 = no limit)")
      ->check(CLI::Range(0u, 10'000'000u));
  setting(app, "MAX_CONNECTIONS_PER_IP", c.connections.max_per_ip,
          "Connections from one address (0 = no limit)")
      ->check(CLI::Range(0u, 10'000'000u));
  setting(app, "MAX_CONNECTIONS_PER_USER", c.connections.max_per_user,
          "Connections of one user (0 = no limit)")
      ->check(CLI::Range(0u, 1'000'000u));
  setting(app, "NEW_CONNECTIONS_PER_IP_PER_SECOND", w.new_connections_per_ip_per_second,
          "New connections a second from one address, bursts of 5 s allowed (0 = no limit)")
      ->check(CLI::Range(0u, 1'000'000u));
  setting(app, "HANDSHAKE_TIMEOUT_MS", w.handshake_timeout_ms, "Time to complete the handshake")
      ->check(CLI::Range(100u, 600'000u));
  setting(app, "IDLE_TIMEOUT_MS", w.idle_timeout_ms,
          "Silence before a ping, then a close (ping at half)")
      ->check(CLI::Range(1000u, 86'400'000u));
  setting(app, "MAX_HTTP_HEADER_BYTES", c.session.max_header_bytes,
          "Largest HTTP request header block; larger gets 431")
      ->check(CLI::Range(1024u, 1024u * 1024));
  setting(app, "MAX_HTTP_BODY_BYTES", c.session.max_body_bytes,
          "Largest HTTP request body; larger gets 413")
      ->check(CLI::Range(0u, 16u * 1024 * 1024));

  setting(app, "REDIS_URL", w.redis_url,
          "redis://[:password@]host:port[/db] for fan-out between instances (needs MONGO_URI); "
          "unset = one instance")
      ->check([](const std::string& url) {
        if (url.empty()) return std::string();
        return fanout::redis::parse_redis_url(url).error;
      });
  setting(app, "REDIS_GAP_MS", w.redis_gap_ms,
          "How long a missing message is waited for before it is read from the store")
      ->check(CLI::Range(1u, 60'000u));
  setting(app, "REDIS_MAX_PENDING_BYTES", w.redis.max_pending_bytes,
          "Bytes of commands waiting for Redis per connection; past it publishes are dropped "
          "and the other instances re-read the store")
      ->check(CLI::Range(16u * 1024, 1024u * 1024 * 1024));
  setting(app, "MONGO_SEAL_SECONDS", w.mongo_seal_seconds,
          "How old the entries after a never-written seq must be before another instance seals "
          "it with a filler (with REDIS_URL)")
      ->check(CLI::Range(1u, 86'400u));
  setting(app, "PRESENCE_TTL_SECONDS", w.presence_ttl_seconds,
          "How long an instance's presence entries live in Redis without a heartbeat")
      ->check(CLI::Range(3u, 3600u));
  setting(app, "WEBHOOK_URL", c.webhooks.url,
          "http(s) URL that receives webhook events (docs/webhooks.md); unset = none");
  setting(app, "WEBHOOK_SECRET", c.webhooks.secret,
          "Key of the events' HMAC-SHA256 signature, at least 16 bytes (needed with WEBHOOK_URL)");
  setting(app, "WEBHOOK_EVENTS", w.webhook_events,
          "Comma-separated: message.offline, message.created, message.read");
  setting(app, "WEBHOOK_INCLUDE_TEXT", c.webhooks.include_text,
          "Whether events carry the message text (true or false)")
      ->default_str("true");
  setting(app, "WEBHOOK_TIMEOUT_MS", w.webhook_timeout_ms, "Time of one POST, answer included")
      ->check(CLI::Range(100u, 600'000u));
  setting(app, "WEBHOOK_MAX_IN_FLIGHT", c.webhooks.max_in_flight,
          "POSTs at once, each for another chat")
      ->check(CLI::Range(1u, 1000u));
  setting(app, "WEBHOOK_MAX_ATTEMPTS", c.webhooks.max_attempts,
          "Attempts of one event before it is kept as failed")
      ->check(CLI::Range(1u, 100u));
  setting(app, "WEBHOOK_BACKOFF_MIN_MS", w.webhook_backoff_min_ms,
          "Wait after a first failed attempt; doubles with each")
      ->check(CLI::Range(10u, 3'600'000u));
  setting(app, "WEBHOOK_BACKOFF_MAX_MS", w.webhook_backoff_max_ms, "Longest wait between attempts")
      ->check(CLI::Range(10u, 86'400'000u));
  setting(app, "WEBHOOK_LEASE_MS", w.webhook_lease_ms,
          "With several instances: how long the sending instance's lease lasts unrenewed")
      ->check(CLI::Range(1000u, 600'000u));
  setting(app, "WEBHOOK_CA_FILE", c.webhooks.ca_file,
          "Extra PEM CA certificates for an https WEBHOOK_URL");
  setting(app, "ADMIN_TOKEN", c.admin_token,
          "Bearer secret of the admin API (/api/admin/); unset = no admin API");
  setting(app, "EDIT_WINDOW_SECONDS", w.edit_window_seconds,
          "How long after sending a message may be edited; 0 = no limit")
      ->check(CLI::Range(0u, 100u * 365 * 86'400));
  setting(app, "RETENTION_DAYS", w.retention_days,
          "Messages older than this many days (a decimal number) are removed; unset or 0 = "
          "kept forever")
      ->check(CLI::Range(0.0, 100'000.0));
  setting(app, "RETENTION_INTERVAL_SECONDS", w.retention_interval_seconds,
          "Time between two retention passes")
      ->check(CLI::Range(1u, 86'400u));
  setting(app, "RETENTION_BATCH", c.retention.batch,
          "Messages a retention pass removes per transaction")
      ->check(CLI::Range(1u, 100'000u));
  setting(app, "LOG_LEVEL", c.log.level, "trace, debug, info, warn, error, critical or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  setting(app, "LOG_FORMAT", c.log.format, "text or json")->check(CLI::IsMember({"text", "json"}));
  setting(app, "SHUTDOWN_TIMEOUT_MS", c.shutdown_timeout_ms, "Longest drain on SIGTERM")
      ->check(CLI::Range(0u, 3'600'000u));

  Config::LegacyImport legacy;
  CLI::App* import = app.add_subcommand(
      "import-legacy",
      "Copy the old service's chats ({chat_id, messages}) into this chatd's store (MONGO_URI, "
      "else SQLITE_PATH), print what was imported and skipped, and exit. Safe to run again");
  import
      ->add_option("--from-uri", legacy.from_uri,
                   "The old MongoDB, e.g. mongodb://host:27017/CatalogServiceDB")
      ->required();
  import->add_option("--from-collection", legacy.from_collection, "The old chats collection")
      ->capture_default_str();
  import->fallthrough();  // settings such as --mongo-uri may follow the sub-command

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& help) {
    return {std::nullopt, app.exit(help)};
  } catch (const CLI::CallForVersion& version) {
    return {std::nullopt, app.exit(version)};
  } catch (const CLI::ParseError& error) {
    // Name the environment variable too: most deployments set it, not the flag.
    const std::string what = error.what();
    std::string setting;
    if (const auto dashes = what.find("--"); dashes != std::string::npos) {
      for (std::size_t i = dashes + 2;
           i < what.size() && (std::isalnum(static_cast<unsigned char>(what[i])) || what[i] == '-');
           ++i) {
        setting += what[i] == '-' ? '_' : static_cast<char>(std::toupper(what[i]));
      }
    }
    std::cerr << "chatd: invalid configuration: " << what;
    if (!setting.empty()) std::cerr << " (setting " << setting << ")";
    std::cerr << "\nRun chatd --help for every setting and its default.\n";
    return {std::nullopt, 2};
  }
  if (const std::string error = finish(w, c); !error.empty()) {
    std::cerr << "chatd: invalid configuration: " << error << '\n';
    return {std::nullopt, 2};
  }
  if (import->parsed()) c.import_legacy = legacy;
  return {c, 0};
}

}  // namespace chatd::app
