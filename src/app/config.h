#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "app/logging.h"
#include "auth/token_verifier.h"
#include "fanout/redis/redis_fanout.h"
#include "net/connection_limits.h"
#include "net/services.h"
#include "store/maintainer.h"
#include "store/mongo/mongo_store.h"
#include "store/sqlite/sqlite_store.h"
#include "users/cached_user_directory.h"
#include "users/user_search_client.h"
#include "webhooks/webhook_options.h"

namespace chatd::app {

/// Every setting of chatd, in one place. Each comes from (weakest first) its
/// default, a `.env` file in the working directory, the environment variable
/// of the same name, and the command-line flag (`PORT` = `--port`).
///
/// The limits of each part are that part's own option struct, held here as it
/// is handed over: each default and its reason live once, beside the field.
/// config.cpp binds every setting to its field, and converts the few that a
/// flag cannot hold as they are (durations, the origin list, SQLITE_SYNC).
struct Config {
  // Settings of no one part.
  std::string host = "0.0.0.0";  ///< Every IPv4 interface, as in a container.
  std::uint16_t port = 5010;     ///< The port clients and deploy/ expect.
  unsigned threads = 0;          ///< I/O threads; 0 = one per core, which keeps them all busy.
  /// Longest drain on SIGTERM: long enough to commit and send what is queued,
  /// short of the systemd unit's TimeoutStopSec (15 s).
  unsigned shutdown_timeout_ms = 10'000;

  // The parts' own options.
  net::SessionOptions session;              ///< Every connection's limits.
  net::ConnectionLimitOptions connections;  ///< Connections in all, per address, per user.
  store::sqlite::SqliteOptions sqlite;      ///< The store unless mongo.uri is set.
  store::mongo::MongoOptions mongo;         ///< The store when mongo.uri is set (MONGO_URI).
  users::UserSearchOptions user_search;     ///< Used when user_search.url is set.
  users::UserCacheOptions user_cache;       ///< In front of the user-search service.
  auth::TokenOptions tokens;                ///< Used when tokens.secret is set (SECRET_KEY).
  /// Set when REDIS_URL is: fan-out between instances.
  std::optional<fanout::redis::RedisFanoutOptions> redis;
  webhooks::WebhookOptions webhooks;  ///< Used when webhooks.url is set (WEBHOOK_URL).
  /// ADMIN_TOKEN: the bearer secret of /api/admin/; empty = no admin API.
  std::string admin_token;
  /// RETENTION_DAYS, RETENTION_INTERVAL_SECONDS, RETENTION_BATCH.
  store::RetentionOptions retention;
  LogOptions log;

  // `chatd import-legacy`: copy the old service's data into this store, then exit.
  struct LegacyImport {
    std::string from_uri;  ///< The old MongoDB; database from the path (default CatalogServiceDB).
    std::string from_collection = "chats";
  };
  std::optional<LegacyImport> import_legacy;  ///< Set when the sub-command was given.
};

/// What parse_config decided.
struct ConfigResult {
  std::optional<Config> config;  ///< Set when chatd should start.
  int exit_code = 0;             ///< Otherwise: exit with this (0 after --help).
};

/// Loads `.env`, reads the environment and `argv`, validates every value.
/// Prints help or a message naming the bad setting on stdout/stderr.
ConfigResult parse_config(int argc, char** argv);

}  // namespace chatd::app
