#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace chatd::app {

/// Every setting of chatd, in one place. Each comes from (weakest first) its
/// default, a `.env` file in the working directory, the environment variable
/// of the same name, and the command-line flag (`PORT` = `--port`).
struct Config {
  // Network
  std::string host = "0.0.0.0";
  std::uint16_t port = 5010;
  unsigned threads = 0;  ///< I/O threads; 0 = one per core.

  // Store
  std::string mongo_uri;
  std::string sqlite_path = "./data/chat.db";
  std::string sqlite_sync = "normal";
  /// Appends waiting for a group commit; past it a send is answered `overloaded`.
  /// The bound the store always had; it holds at most this × (text + ~300 bytes).
  unsigned store_max_queued_appends = 100'000;
  /// Reads (history, receipts, conversation lists) waiting for a reader thread;
  /// past it a read is answered `overloaded` (callers treat it as unavailable).
  /// One per connection at the default MAX_CONNECTIONS: a reconnect storm reads
  /// every connection's history at once.
  unsigned store_max_queued_reads = 100'000;

  // User verification
  std::string user_search_url;
  unsigned user_search_timeout_ms = 2000;
  unsigned user_search_max_in_flight = 64;
  unsigned user_cache_ttl_ms = 300'000;
  unsigned user_cache_negative_ttl_ms = 30'000;
  unsigned user_cache_max_entries = 100'000;

  // Security
  std::string secret_key;
  unsigned token_leeway_seconds = 30;
  std::string allowed_origins;

  // Protocol and limits
  unsigned history_limit = 100;
  unsigned max_message_bytes = 64 * 1024;
  unsigned max_text_bytes = 16 * 1024;
  unsigned send_queue_max_bytes = 1024 * 1024;
  unsigned send_stall_timeout_ms = 0;  ///< 0 = IDLE_TIMEOUT_MS
  unsigned max_store_calls_per_connection = 256;
  unsigned messages_per_second = 20;
  unsigned message_burst = 50;
  unsigned max_connections = 100'000;
  unsigned max_connections_per_ip = 2'000;
  unsigned max_connections_per_user = 32;
  unsigned new_connections_per_ip_per_second = 100;
  unsigned handshake_timeout_ms = 10'000;
  unsigned idle_timeout_ms = 60'000;
  unsigned max_http_header_bytes = 8 * 1024;
  unsigned max_http_body_bytes = 64 * 1024;

  // Operations
  std::string redis_url;
  unsigned redis_gap_ms = 200;
  unsigned presence_ttl_seconds = 30;
  /// Bytes of commands one Redis connection may have unanswered; past it
  /// publishes are dropped (the store has them). 8 MiB: several seconds of a
  /// busy instance's publishes, or 500 of the largest messages, which a Redis
  /// that answers at all takes in well under a second.
  unsigned redis_max_pending_bytes = 8 * 1024 * 1024;
  std::string log_level = "info";
  std::string log_format = "text";
  unsigned shutdown_timeout_ms = 10'000;

  // `chatd import-legacy`: copy the old service's data into this store, then exit.
  struct LegacyImport {
    std::string from_uri;  ///< The old MongoDB; database from the path (default CatalogServiceDB).
    std::string from_collection = "chats";
  };
  std::optional<LegacyImport> import_legacy;  ///< Set when the sub-command was given.

  std::vector<std::string> allowed_origin_list() const;
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
