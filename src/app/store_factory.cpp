#include "app/store_factory.h"

#include <spdlog/spdlog.h>

#include "store/mongo/mongo_store.h"
#include "store/sqlite/sqlite_store.h"

namespace chatd::app {

std::unique_ptr<store::Store> make_store(const Config& config, store::CommitListener listener,
                                         store::CommitObserver observer) {
  if (!config.mongo.uri.empty()) {
    auto store = std::make_unique<store::mongo::MongoStore>(config.mongo, std::move(listener),
                                                            std::move(observer));
    // Connecting happens in the background; the store logs when it is ready.
    spdlog::info("store: MongoDB at {}", store->description());
    return store;
  }
  auto store = std::make_unique<store::sqlite::SqliteStore>(config.sqlite, std::move(listener),
                                                            std::move(observer));
  spdlog::info("store: SQLite at {} (synchronous={})", config.sqlite.path,
               store::sqlite::to_string(config.sqlite.sync));
  return store;
}

}  // namespace chatd::app
