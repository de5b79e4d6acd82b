#include "store/mongo/mongo_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "store/mongo/batch_writer.h"
#include "store/mongo/bson_mapping.h"
#include "util/post_result.h"

namespace chatd::store::mongo {

MongoStore::MongoStore(MongoOptions options, CommitListener listener, CommitObserver observer)
    : options_(std::move(options)),
      listener_(std::move(listener)),
      observer_(std::move(observer)),
      connection_(options_.uri),
      appends_(options_.max_queued) {
  monitor_ = std::thread([this] { monitor_loop(); });
  writer_ = std::thread([this] { writer_loop(); });
  for (std::size_t i = 0; i < std::max<std::size_t>(1, options_.reader_threads); ++i) {
    readers_.emplace_back([this] { reader_loop(); });
  }
}

MongoStore::~MongoStore() {
  drain();
  appends_.stop();
  writer_.join();
  reads_.stop();
  for (auto& reader : readers_) reader.join();
  {
    std::lock_guard lock(state_mutex_);
    stopping_ = true;
  }
  state_changed_.notify_all();
  monitor_.join();
  // The threads gave their clients back; connection_ now destroys the pool.
}

// ---------------------------------------------------------------------------
// Reachability
// ---------------------------------------------------------------------------

void MongoStore::monitor_loop() {
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

void MongoStore::mark_unreachable() {
  {
    std::lock_guard lock(state_mutex_);
    if (!ready()) return;
    ready_.store(false, std::memory_order_relaxed);
  }
  spdlog::error("mongo: lost MongoDB at {}; sends fail with store_unavailable until it is back",
                connection_.description());
  state_changed_.notify_all();
}

// ---------------------------------------------------------------------------
// Appends and group commit
// ---------------------------------------------------------------------------

void MongoStore::append(chat::PendingMessage message, AppendHandler handler) {
  appends_.push(std::move(message), std::move(handler));
}

void MongoStore::writer_loop() {
  PooledClient client(connection_.pool());
  BatchWriter writer(client.get(), connection_.database());
  std::vector<Append> batch;
  batch.reserve(options_.max_batch);
  while (appends_.take(batch, options_.max_batch)) {
    commit(writer, batch);
    batch.clear();
    appends_.done();
  }
}

void MongoStore::commit(BatchWriter& writer, std::vector<Append>& batch) {
  std::vector<chat::PendingMessage> messages;
  messages.reserve(batch.size());
  for (auto& append : batch) messages.push_back(std::move(append.message));
  std::vector<AppendResult> results;
  const auto started = std::chrono::steady_clock::now();
  if (!ready()) {
    // Fail fast while the monitor waits for the server to come back.
    results.assign(batch.size(), AppendResult{StoreError::unavailable, nullptr, false});
  } else if (!writer.write(messages, results)) {
    mark_unreachable();
  }
  std::vector<chat::MessagePtr> committed;
  bool ok = true;
  for (const auto& result : results) {
    if (result.error != StoreError::none) ok = false;
    if (result.error == StoreError::none && !result.duplicate) committed.push_back(result.message);
  }
  if (observer_) observer_(batch.size(), std::chrono::steady_clock::now() - started, ok);
  // A renumbered message (another instance wrote its chat meanwhile) may come
  // after later ones of the batch: receivers get each chat in seq order.
  std::stable_sort(committed.begin(), committed.end(),
                   [](const auto& a, const auto& b) { return a->seq < b->seq; });
  // Receivers hear of the messages before their senders do, in commit order.
  if (listener_ && !committed.empty()) listener_(committed);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    util::post_result(std::move(batch[i].handler), std::move(results[i]));
  }
}

void MongoStore::drain() {
  appends_.drain();
}

// ---------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------

void MongoStore::history(chat::ChatKey chat, HistoryQuery query, HistoryHandler handler) {
  reads_.push(Read{std::move(chat), query, std::move(handler)});
}

void MongoStore::mark_read(chat::ChatKey chat, std::string user, std::uint64_t seq,
                           ReadMarksHandler handler) {
  reads_.push(MarkRead{std::move(chat), std::move(user), seq, std::move(handler)});
}

void MongoStore::read_marks(chat::ChatKey chat, ReadMarksHandler handler) {
  reads_.push(MarkRead{std::move(chat), {}, 0, std::move(handler)});
}

void MongoStore::conversations(std::string user, std::size_t limit,
                               ConversationsHandler handler) {
  reads_.push(ListConversations{std::move(user), limit, std::move(handler)});
}

void MongoStore::reader_loop() {
  PooledClient client(connection_.pool());
  while (std::optional<ReadJob> job = reads_.pop()) {
    if (auto* read = std::get_if<Read>(&*job)) {
      HistoryPage page = ready() ? read_page(client.get(), *read)
                                 : HistoryPage{StoreError::unavailable, {}, false};
      util::post_result(std::move(read->handler), std::move(page));
    } else if (auto* mark = std::get_if<MarkRead>(&*job)) {
      ReadMarks marks =
          ready() ? write_read_mark(client.get(), *mark) : ReadMarks{StoreError::unavailable};
      util::post_result(std::move(mark->handler), std::move(marks));
    } else {
      auto& list = std::get<ListConversations>(*job);
      ConversationList result = ready() ? list_conversations(client.get(), list)
                                        : ConversationList{StoreError::unavailable, {}};
      util::post_result(std::move(list.handler), std::move(result));
    }
  }
}

HistoryPage MongoStore::read_page(mongoc_client_t* client, const Read& read) {
  const Collection messages(
      mongoc_client_get_collection(client, connection_.database().c_str(), kMessages));
  Bson filter, options;
  append_history_filter(filter.get(), read.chat, read.query);
  append_history_options(options.get(), read.query);
  Cursor cursor(
      mongoc_collection_find_with_opts(messages.get(), filter.get(), options.get(), nullptr));
  HistoryPage page;
  PageFill fill(read.query, page);
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    if (auto message = message_from_document(document)) {
      if (!fill.add(std::move(message))) break;
    } else {
      spdlog::warn("mongo: skipping a malformed message document in chat {}", read.chat.str());
    }
  }
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) {
    spdlog::error("mongo: cannot read history of chat {}: {}", read.chat.str(), message_of(error));
    if (is_connection_error(error)) mark_unreachable();
    return HistoryPage{StoreError::unavailable, {}, false};
  }
  if (!read.query.oldest_first) std::reverse(page.messages.begin(), page.messages.end());
  return page;
}

}  // namespace chatd::store::mongo
