#include "app/store_factory.h"

#include <spdlog/spdlog.h>

#include "store/mongo/mongo_store.h"
#include "store/sqlite/sqlite_store.h"

namespace chatd::app {

std::unique_ptr<store::Store> make_store(const Config& config, store::CommitListener listener,
                                         store::CommitObserver observer) {
  if (!config.mongo_uri.empty()) {
    store::mongo::MongoOptions mongo;
    mongo.uri = config.mongo_uri;
    mongo.max_queued_appends = config.store_max_queued_appends;
    mongo.max_queued_reads = config.store_max_queued_reads;
    auto store =
        std::make_unique<store::mongo::MongoStore>(mongo, std::move(listener), std::move(observer));
    // Connecting happens in the background; the store logs when it is ready.
    spdlog::info("store: MongoDB at {}", store->description());
    return store;
  }
  store::sqlite::SqliteOptions sqlite;
  sqlite.path = config.sqlite_path;
  sqlite.max_queued_appends = config.store_max_queued_appends;
  sqlite.max_queued_reads = config.store_max_queued_reads;
  sqlite.sync = config.sqlite_sync == "full" ? store::sqlite::SyncMode::full
                                             : store::sqlite::SyncMode::normal;
  auto store = std::make_unique<store::sqlite::SqliteStore>(sqlite, std::move(listener),
                                                            std::move(observer));
  spdlog::info("store: SQLite at {} (synchronous={})", config.sqlite_path, config.sqlite_sync);
  return store;
}

}  // namespace chatd::app
