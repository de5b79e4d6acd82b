#pragma once

// RAII for libmongoc and libbson: every handle chatd takes from the driver is
// owned by one of these, so no early return or exception leaks a connection,
// a cursor or a document.

#include <mongoc/mongoc.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace chatd::store::mongo {

/// Start-up failures (an invalid URI, a refused write concern) throw this with
/// a message saying what to fix. The message path never throws.
class MongoError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Calls mongoc_init() once per process and mongoc_cleanup() at exit, after
/// every store is gone (a function-local static outlives main()). Also routes
/// the driver's own log lines into spdlog.
void ensure_driver_initialized();

struct UriDeleter {
  void operator()(mongoc_uri_t* uri) const { mongoc_uri_destroy(uri); }
};
struct PoolDeleter {
  void operator()(mongoc_client_pool_t* pool) const { mongoc_client_pool_destroy(pool); }
};
struct CollectionDeleter {
  void operator()(mongoc_collection_t* collection) const { mongoc_collection_destroy(collection); }
};
struct CursorDeleter {
  void operator()(mongoc_cursor_t* cursor) const { mongoc_cursor_destroy(cursor); }
};
struct BulkDeleter {
  void operator()(mongoc_bulk_operation_t* bulk) const { mongoc_bulk_operation_destroy(bulk); }
};
struct WriteConcernDeleter {
  void operator()(mongoc_write_concern_t* concern) const { mongoc_write_concern_destroy(concern); }
};
struct FindAndModifyOptsDeleter {
  void operator()(mongoc_find_and_modify_opts_t* opts) const {
    mongoc_find_and_modify_opts_destroy(opts);
  }
};

using Uri = std::unique_ptr<mongoc_uri_t, UriDeleter>;
using Pool = std::unique_ptr<mongoc_client_pool_t, PoolDeleter>;
using Collection = std::unique_ptr<mongoc_collection_t, CollectionDeleter>;
using Cursor = std::unique_ptr<mongoc_cursor_t, CursorDeleter>;
using Bulk = std::unique_ptr<mongoc_bulk_operation_t, BulkDeleter>;
using WriteConcern = std::unique_ptr<mongoc_write_concern_t, WriteConcernDeleter>;
using FindAndModifyOpts = std::unique_ptr<mongoc_find_and_modify_opts_t, FindAndModifyOptsDeleter>;

/// A client taken from a pool, given back when this goes away. A client is
/// not thread-safe: each store thread holds its own for its whole life.
class PooledClient {
 public:
  /// Blocks while every client of the pool is taken (the pool's maxPoolSize).
  explicit PooledClient(mongoc_client_pool_t* pool)
      : pool_(pool), client_(mongoc_client_pool_pop(pool)) {}
  ~PooledClient() { mongoc_client_pool_push(pool_, client_); }
  PooledClient(const PooledClient&) = delete;
  PooledClient& operator=(const PooledClient&) = delete;

  mongoc_client_t* get() const { return client_; }
  Collection collection(const std::string& database, const char* name) const {
    return Collection(mongoc_client_get_collection(client_, database.c_str(), name));
  }

 private:
  mongoc_client_pool_t* pool_;
  mongoc_client_t* client_;
};

/// An owned bson_t, on the stack. Driver functions that fill a `reply`
/// initialise it even when they fail; passing an empty Bson there is fine
/// (an empty bson_t holds no heap memory to leak) and this frees the reply.
class Bson {
 public:
  Bson() { bson_init(&value_); }
  ~Bson() { bson_destroy(&value_); }
  Bson(const Bson&) = delete;
  Bson& operator=(const Bson&) = delete;

  bson_t* get() { return &value_; }
  const bson_t* get() const { return &value_; }

  /// Relaxed extended JSON, for log lines and tests.
  std::string json() const;

 private:
  bson_t value_;
};

/// An owned bson_t* from BCON_NEW. (Not a unique_ptr: bson_t's alignment
/// attribute is dropped on a template argument, which GCC warns about.)
class BsonPtr {
 public:
  explicit BsonPtr(bson_t* document) : document_(document) {}
  ~BsonPtr() { bson_destroy(document_); }
  BsonPtr(const BsonPtr&) = delete;
  BsonPtr& operator=(const BsonPtr&) = delete;
  bson_t* get() const { return document_; }

 private:
  bson_t* document_;
};

/// The text of a driver error, e.g. "No suitable servers found ...".
inline std::string_view message_of(const bson_error_t& error) {
  return error.message;
}

}  // namespace chatd::store::mongo
