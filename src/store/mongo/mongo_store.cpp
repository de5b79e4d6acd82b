#include "store/mongo/mongo_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "store/mongo/batch_writer.h"
#include "store/mongo/bson_mapping.h"
#include "store/mongo/mongo_maintenance.h"
#include "store/mongo/mongo_outbox.h"
#include "store/mongo/mongo_reader.h"
#include "util/thread_name.h"

namespace chatd::store::mongo {
namespace {

/// The writer thread's BatchWriter, on a client of its own.
class MongoCommitter final : public Committer {
 public:
  explicit MongoCommitter(MongoBackend& backend)
      : backend_(backend),
        client_(backend.connection().pool()),
        writer_(client_.get(), backend.connection().database()) {}

  bool commit(std::span<const chat::PendingMessage> batch,
              std::vector<AppendResult>& results) override {
    // Fail fast while the monitor waits for the server to come back.
    if (!backend_.ready()) return false;
    const CommandCounter counting(backend_.write_command_counter());
    if (!writer_.write(batch, results, !backend_.client_id_index())) backend_.mark_unreachable();
    return std::all_of(results.begin(), results.end(),
                       [](const AppendResult& result) { return result.error == StoreError::none; });
  }

  // A batch's entries are inserted chat by chat, with the fillers of the seqs
  // none took: receivers get each chat in seq order, fillers included.
  void order_for_listener(std::vector<chat::MessagePtr>& committed) override {
    committed.insert(committed.end(), writer_.fillers().begin(), writer_.fillers().end());
    writer_.fillers().clear();
    std::stable_sort(committed.begin(), committed.end(),
                     [](const auto& a, const auto& b) { return a->seq < b->seq; });
  }

 private:
  MongoBackend& backend_;
  PooledClient client_;
  BatchWriter writer_;
};

}  // namespace

MongoBackend::MongoBackend(const MongoOptions& options)
    : options_(options), connection_(options_.uri) {
  monitor_ = std::thread([this] {
    util::name_this_thread("chatd-mongo-mon");
    monitor_loop();
  });
}

// QueuedStore has joined the writer and the readers, which gave their clients
// back; connection_ then destroys the pool.
MongoBackend::~MongoBackend() {
  {
    std::lock_guard lock(state_mutex_);
    stopping_ = true;
  }
  state_changed_.notify_all();
  monitor_.join();
}

std::unique_ptr<Committer> MongoBackend::make_committer() {
  return std::make_unique<MongoCommitter>(*this);
}

std::unique_ptr<Reader> MongoBackend::make_reader(std::size_t /*index*/) {
  return std::make_unique<MongoReader>(*this);
}

std::unique_ptr<Outbox> MongoBackend::make_outbox() {
  return std::make_unique<MongoOutbox>(*this);
}

std::unique_ptr<Maintenance> MongoBackend::make_maintenance() {
  return std::make_unique<MongoMaintenance>(*this);
}

// ---------------------------------------------------------------------------
// Reachability
// ---------------------------------------------------------------------------

void MongoBackend::monitor_loop() {
  PooledClient client(connection_.pool());
  auto delay = options_.retry_min;
  bool failing = false;
  std::unique_lock lock(state_mutex_);
  while (!stopping_) {
    if (indexes_created_ && ready()) {
      state_changed_.wait(lock, [&] { return stopping_ || !ready(); });
      continue;
    }
    const bool first_setup = !indexes_created_;
    lock.unlock();
    bson_error_t error;
    bool client_id_index = false;
    const bool ok = ping(client.get(), error) &&
                    (!first_setup ||
                     create_indexes(client.get(), connection_.database(), client_id_index, error));
    lock.lock();
    if (ok) {
      if (first_setup) client_id_index_.store(client_id_index, std::memory_order_relaxed);
      indexes_created_ = true;
      ready_.store(true, std::memory_order_relaxed);
      spdlog::info("mongo: {} at {}",
                   first_setup ? "connected, indexes in place" : "reachable again",
                   connection_.description());
      delay = options_.retry_min;
      failing = false;
      state_changed_.notify_all();
      continue;
    }
    // The first failure says what is wrong and what chatd does about it;
    // the retries after it stay at warn level.
    spdlog::log(failing ? spdlog::level::warn : spdlog::level::err,
                "mongo: cannot {} MongoDB at {}: {}; chatd stays up, reports not ready (/readyz "
                "503) and retries in {} ms",
                first_setup ? "set up" : "reach", connection_.description(), message_of(error),
                delay.count());
    failing = true;
    state_changed_.wait_for(lock, delay, [&] { return stopping_; });
    delay = std::min(delay * 2, options_.retry_max);
  }
}

void MongoBackend::mark_unreachable() {
  {
    std::lock_guard lock(state_mutex_);
    if (!ready()) return;
    ready_.store(false, std::memory_order_relaxed);
  }
  spdlog::error("mongo: lost MongoDB at {}; sends fail with store_unavailable until it is back",
                connection_.description());
  state_changed_.notify_all();
}

MongoStore::MongoStore(const MongoOptions& options, CommitListener listener,
                       CommitObserver observer)
    : QueuedStore(std::make_unique<MongoBackend>(options), queue_options_of(options),
                  std::move(listener), std::move(observer)) {}

const std::string& MongoStore::description() const {
  return static_cast<const MongoBackend&>(backend()).connection().description();
}

}  // namespace chatd::store::mongo
