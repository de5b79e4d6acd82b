#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "store/mongo/mongo_handles.h"

namespace chatd::store::mongo {

/// Database used when MONGO_URI has no path (`mongodb://host:27017`).
inline constexpr const char* kDefaultDatabase = "chat";

/// The parsed MONGO_URI and the client pool every store thread takes its
/// client from. Creating it does no I/O: the driver connects in the
/// background, so an unreachable server never stops chatd from starting.
///
/// Defaults chatd applies when the URI does not set them:
/// - write concern `w=majority, j=true`: a message is acknowledged only once a
///   majority of the replica set has it in its journal, so no failover or
///   crash of the server can take back a message a client was told is stored;
/// - connectTimeoutMS=2000, serverSelectionTimeoutMS=2000: with the server
///   gone, a send fails with store_unavailable within seconds instead of the
///   driver's 30 s, and a new session closes with 1013 at once;
/// - socketTimeoutMS=10000: a server that stops answering mid-request is
///   given up on (the write's outcome is then unknown; see MongoStore).
class Connection {
 public:
  /// Throws MongoError naming `setting` when the URI does not parse or asks
  /// for w=0 (unacknowledged writes cannot be told to a client as stored).
  explicit Connection(const std::string& uri,
                      const std::string& default_database = kDefaultDatabase,
                      const std::string& setting = "MONGO_URI");

  mongoc_client_pool_t* pool() const { return pool_.get(); }
  const std::string& database() const { return database_; }
  /// "host:port/database, w=majority, j=true" — for logs; no credentials.
  const std::string& description() const { return description_; }

 private:
  Uri uri_;
  Pool pool_;
  std::string database_;
  std::string description_;
};

/// Driver and server errors that mean "the server is unreachable or cannot
/// take writes right now" (network, server selection, failover), as opposed
/// to one operation being refused.
bool is_connection_error(const bson_error_t& error);

/// Counts every command this thread sends to the server while it lives
/// (the driver's command monitoring, set on the pool by Connection): the
/// round trips of one thread's work, e.g. the writer's per batch.
class CommandCounter {
 public:
  explicit CommandCounter(std::atomic<std::uint64_t>& total);
  ~CommandCounter();
  CommandCounter(const CommandCounter&) = delete;
  CommandCounter& operator=(const CommandCounter&) = delete;

 private:
  std::atomic<std::uint64_t>* previous_;
};

/// One round trip: {ping: 1}.
bool ping(mongoc_client_t* client, bson_error_t& error);

/// Creates the collections' indexes (idempotent). `client_id_index` tells
/// whether the server enforces unique client ids; FerretDB 1.x cannot build
/// partial indexes, and then the store falls back to looking client ids up.
bool create_indexes(mongoc_client_t* client, const std::string& database, bool& client_id_index,
                    bson_error_t& error);

}  // namespace chatd::store::mongo
