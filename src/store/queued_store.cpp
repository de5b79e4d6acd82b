#include "store/queued_store.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "util/post_result.h"
#include "util/thread_name.h"

namespace chatd::store {

QueuedStore::QueuedStore(std::unique_ptr<Backend> backend, QueueOptions options,
                         CommitListener listener, CommitObserver observer)
    : backend_(std::move(backend)),
      options_(options),
      listener_(std::move(listener)),
      observer_(std::move(observer)),
      appends_(options_.max_queued_appends),
      reads_(options_.max_queued_reads) {
  writer_ = std::thread([this] {
    util::name_this_thread("chatd-writer");
    writer_loop();
  });
  for (std::size_t i = 0; i < std::max<std::size_t>(1, options_.reader_threads); ++i) {
    readers_.emplace_back([this, i] {
      util::name_this_thread("chatd-reader");
      reader_loop(i);
    });
  }
}

QueuedStore::~QueuedStore() {
  drain();
  appends_.stop();
  writer_.join();
  reads_.stop();
  for (auto& reader : readers_) reader.join();
}

QueueStats QueuedStore::queue_stats() const {
  return QueueStats{appends_.size(),
                    reads_.size(),
                    appends_.refused(),
                    reads_.refused(),
                    batches_.load(std::memory_order_relaxed),
                    backend_->write_commands()};
}

void QueuedStore::drain() {
  appends_.drain();
}

// ---------------------------------------------------------------------------
// Appends and group commit
// ---------------------------------------------------------------------------

void QueuedStore::append(chat::PendingMessage message, AppendHandler handler) {
  appends_.push(std::move(message), std::move(handler));
}

void QueuedStore::writer_loop() {
  const std::unique_ptr<Committer> committer = backend_->make_committer();
  std::vector<Append> batch;
  batch.reserve(options_.max_batch);
  while (appends_.take(batch, options_.max_batch)) {
    commit(*committer, batch);
    batch.clear();
    appends_.done();
  }
}

void QueuedStore::commit(Committer& committer, std::vector<Append>& batch) {
  std::vector<chat::PendingMessage> messages;
  messages.reserve(batch.size());
  for (auto& append : batch) messages.push_back(std::move(append.message));
  std::vector<AppendResult> results(batch.size(),
                                    AppendResult{StoreError::unavailable, nullptr, false});
  const auto started = std::chrono::steady_clock::now();
  const bool ok = committer.commit(messages, results);
  batches_.fetch_add(1, std::memory_order_relaxed);
  if (observer_) observer_(batch.size(), std::chrono::steady_clock::now() - started, ok);

  std::vector<chat::MessagePtr> committed;
  committed.reserve(batch.size());
  for (const auto& result : results) {
    // A refusal (the chat's rules) has no message; a duplicate was announced before.
    if (result.error == StoreError::none && !result.duplicate && result.message) {
      committed.push_back(result.message);
    }
  }
  committer.order_for_listener(committed);
  // Receivers hear of the messages before their senders do, in commit order.
  if (listener_ && !committed.empty()) listener_(committed);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    util::post_result(std::move(batch[i].handler), std::move(results[i]));
  }
}

// ---------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------

void QueuedStore::history(chat::ChatKey chat, HistoryQuery query, HistoryHandler handler) {
  reads_.push(Read{std::move(chat), query, std::move(handler)});
}

void QueuedStore::mark_read(chat::ChatKey chat, std::string user, std::uint64_t seq,
                            ReadMarksHandler handler) {
  reads_.push(MarkRead{std::move(chat), std::move(user), seq, std::move(handler)});
}

void QueuedStore::read_marks(chat::ChatKey chat, ReadMarksHandler handler) {
  reads_.push(MarkRead{std::move(chat), {}, 0, std::move(handler)});
}

void QueuedStore::conversations(std::string user, std::size_t limit, ConversationsHandler handler) {
  reads_.push(ListConversations{std::move(user), limit, std::move(handler)});
}

void QueuedStore::blocks(std::string user, BlocksHandler handler) {
  reads_.push(ListBlocks{std::move(user), std::move(handler)});
}

void QueuedStore::reader_loop(std::size_t index) {
  const std::unique_ptr<Reader> reader = backend_->make_reader(index);
  while (std::optional<ReadJob> job = reads_.pop()) {
    if (auto* read = std::get_if<Read>(&*job)) {
      util::post_result(std::move(read->handler), reader->history(read->chat, read->query));
    } else if (auto* mark = std::get_if<MarkRead>(&*job)) {
      util::post_result(std::move(mark->handler),
                        reader->mark_read(mark->chat, mark->user, mark->seq));
    } else if (auto* list = std::get_if<ListConversations>(&*job)) {
      util::post_result(std::move(list->handler), reader->conversations(list->user, list->limit));
    } else {
      auto& blocks = std::get<ListBlocks>(*job);
      util::post_result(std::move(blocks.handler), reader->blocks(blocks.user));
    }
  }
}

}  // namespace chatd::store
