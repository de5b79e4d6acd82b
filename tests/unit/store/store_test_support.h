#pragma once

// What the store tests share: an io_context standing in for a session's
// strand, waits on the store's answers, and gates that hold a store thread.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "store/store.h"

namespace chatd::store::test_support {
namespace asio = boost::asio;
using chat::ChatKey;
using chat::MessagePtr;
using chat::PendingMessage;

// Every wait in these tests is for an event; this only bounds a hang.
inline constexpr auto kTimeout = std::chrono::seconds(60);

inline const ChatKey kAliceBob = ChatKey::of("alice", "bob");
inline const ChatKey kAliceCarol = ChatKey::of("alice", "carol");

inline PendingMessage pending(const ChatKey& chat, std::string sender, std::string text,
                              std::string client_id = {}, chat::ConnectionId origin = 0) {
  return PendingMessage{.chat = chat,
                        .sender = std::move(sender),
                        .text = std::move(text),
                        .client_id = std::move(client_id),
                        .origin = origin};
}

inline std::vector<std::uint64_t> seqs_of(const std::vector<MessagePtr>& messages) {
  std::vector<std::uint64_t> seqs;
  for (const auto& message : messages) seqs.push_back(message->seq);
  return seqs;
}

inline std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t last) {
  std::vector<std::uint64_t> result;
  for (std::uint64_t seq = first; seq <= last; ++seq) result.push_back(seq);
  return result;
}

/// Records what the commit listener is told, with a logical clock shared with
/// the append handlers so the order of the two can be checked.
struct CommitLog {
  std::atomic<std::uint64_t> clock{0};
  std::mutex mutex;
  std::vector<std::vector<MessagePtr>> batches;
  std::map<std::string, std::uint64_t> tick_by_id;  // message id -> when the listener saw it

  CommitListener listener() {
    return [this](std::span<const MessagePtr> batch) {
      std::lock_guard lock(mutex);
      batches.emplace_back(batch.begin(), batch.end());
      for (const auto& message : batch) tick_by_id[message->id] = clock.fetch_add(1);
    };
  }

  std::vector<MessagePtr> messages() {
    std::lock_guard lock(mutex);
    std::vector<MessagePtr> all;
    for (const auto& batch : batches) all.insert(all.end(), batch.begin(), batch.end());
    return all;
  }

  std::vector<std::uint64_t> seqs_of_chat(const ChatKey& chat) {
    std::vector<std::uint64_t> seqs;
    for (const auto& message : messages()) {
      if (message->chat == chat) seqs.push_back(message->seq);
    }
    return seqs;
  }
};

/// Holds the commit thread inside the listener until opened, to make the
/// queue fill up deterministically.
class Gate {
 public:
  /// Called from the listener: announces arrival and waits to be let through.
  void pass() {
    std::unique_lock lock(mutex_);
    ++arrivals_;
    changed_.notify_all();
    changed_.wait_for(lock, kTimeout, [&] { return open_; });
  }
  bool wait_for_arrival() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, kTimeout, [&] { return arrivals_ > 0; });
  }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int arrivals_ = 0;
  bool open_ = false;
};

/// Declared after the store, so that the gate opens before ~SqliteStore
/// waits for the commit thread, whichever way the test ends.
struct OpenOnExit {
  Gate& gate;
  ~OpenOnExit() { gate.open(); }
};

/// Counts completions and lets the test wait for a number of them.
class Completions {
 public:
  void add(AppendResult result, std::size_t index) {
    std::lock_guard lock(mutex_);
    results_[index] = std::move(result);
    done_.notify_all();
  }
  bool wait_for(std::size_t count) {
    std::unique_lock lock(mutex_);
    return done_.wait_for(lock, kTimeout, [&] { return results_.size() >= count; });
  }
  std::map<std::size_t, AppendResult> results() {
    std::lock_guard lock(mutex_);
    return results_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  std::map<std::size_t, AppendResult> results_;
};

/// What a run of appends came to: how many were refused with `overloaded`
/// (each with no message), and the seqs of the others, which must have
/// succeeded, in increasing order.
struct AppendOutcomes {
  std::size_t overloaded = 0;
  std::vector<std::uint64_t> seqs;
};

inline AppendOutcomes outcomes_of(const std::map<std::size_t, AppendResult>& results) {
  AppendOutcomes outcomes;
  for (const auto& [index, result] : results) {
    if (result.error == StoreError::overloaded) {
      ++outcomes.overloaded;
      EXPECT_EQ(result.message, nullptr) << index;
    } else if (result.error != StoreError::none || result.message == nullptr) {
      ADD_FAILURE() << "append " << index << " failed: " << to_string(result.error);
    } else {
      outcomes.seqs.push_back(result.message->seq);
    }
  }
  std::sort(outcomes.seqs.begin(), outcomes.seqs.end());
  return outcomes;
}

/// A test that talks to a store the way a session does: every handler is bound
/// to an io_context (the session's strand) run by a thread of the test.
class StoreTest : public ::testing::Test {
 protected:
  StoreTest() : io_thread_([this] { io_.run(); }) {}
  ~StoreTest() override {
    guard_.reset();
    io_thread_.join();
  }

  /// Appends and waits for the handler, which runs on the test's io_context.
  AppendResult append(Store& store, PendingMessage message) {
    auto promise = std::make_shared<std::promise<AppendResult>>();
    auto future = promise->get_future();
    async_append(store, std::move(message),
                 asio::bind_executor(io_, [promise, this](AppendResult result) {
                   EXPECT_TRUE(io_.get_executor().running_in_this_thread())
                       << "append handler did not run on its associated executor";
                   promise->set_value(std::move(result));
                 }));
    if (future.wait_for(kTimeout) != std::future_status::ready) {
      ADD_FAILURE() << "append did not complete";
      return AppendResult{StoreError::unavailable, nullptr, false};
    }
    return future.get();
  }

  AppendResult append(Store& store, const ChatKey& chat, const std::string& sender,
                      const std::string& text, const std::string& client_id = {}) {
    return append(store, pending(chat, sender, text, client_id));
  }

  /// Appends without waiting; the result lands in `completions` under `index`.
  void append_async(Store& store, PendingMessage message,
                    const std::shared_ptr<Completions>& completions, std::size_t index) {
    async_append(store, std::move(message),
                 asio::bind_executor(io_, [completions, index](AppendResult result) {
                   completions->add(std::move(result), index);
                 }));
  }

  HistoryPage history(Store& store, const ChatKey& chat, HistoryQuery query) {
    auto promise = std::make_shared<std::promise<HistoryPage>>();
    auto future = promise->get_future();
    async_history(store, chat, query, asio::bind_executor(io_, [promise](HistoryPage page) {
                    promise->set_value(std::move(page));
                  }));
    if (future.wait_for(kTimeout) != std::future_status::ready) {
      ADD_FAILURE() << "history did not complete";
      return HistoryPage{StoreError::unavailable, {}, false};
    }
    return future.get();
  }

  /// Runs one of the store's calls that answer with a T, and waits for it.
  template <typename T, typename Call>
  T wait(Call call) {
    auto promise = std::make_shared<std::promise<T>>();
    auto future = promise->get_future();
    call(asio::bind_executor(io_, [promise](T value) { promise->set_value(std::move(value)); }));
    if (future.wait_for(kTimeout) != std::future_status::ready) {
      ADD_FAILURE() << "the store did not answer";
      T failed;
      failed.error = StoreError::unavailable;
      return failed;
    }
    return future.get();
  }

  ReadMarks mark_read(Store& store, const ChatKey& chat, const std::string& user,
                      std::uint64_t seq) {
    return wait<ReadMarks>([&](auto handler) {
      store.mark_read(chat, user, seq, Store::ReadMarksHandler(std::move(handler)));
    });
  }

  ConversationList conversations(Store& store, const std::string& user, std::size_t limit) {
    return wait<ConversationList>([&](auto handler) {
      store.conversations(user, limit, Store::ConversationsHandler(std::move(handler)));
    });
  }

  HistoryPage newest(Store& store, const ChatKey& chat, std::size_t limit,
                     std::uint64_t before_seq = 0) {
    HistoryQuery query;
    query.limit = limit;
    query.before_seq = before_seq;
    return history(store, chat, query);
  }

  HistoryPage after(Store& store, const ChatKey& chat, std::uint64_t after_seq, std::size_t limit) {
    HistoryQuery query;
    query.after_seq = after_seq;
    query.limit = limit;
    query.oldest_first = true;
    return history(store, chat, query);
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_{io_.get_executor()};
  std::thread io_thread_;  // declared last: it runs io_
};

}  // namespace chatd::store::test_support
