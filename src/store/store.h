#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "chat/message.h"

namespace chatd::store {

enum class StoreError {
  none,
  unavailable,    ///< The database failed or is unreachable; nothing was stored.
  overloaded,     ///< Too many appends are waiting; nothing was stored.
  shutting_down,  ///< The store is draining; nothing was stored.
};

std::string_view to_string(StoreError error);

struct AppendResult {
  StoreError error = StoreError::none;
  chat::MessagePtr message;  ///< The committed message when error is none.
  bool duplicate = false;    ///< The client id was seen before; `message` is the original.
};

struct HistoryQuery {
  std::uint64_t before_seq = 0;  ///< Only messages with seq < before_seq; 0 = no bound.
  std::uint64_t after_seq = 0;   ///< Only messages with seq > after_seq.
  std::size_t limit = 100;
  /// With after_seq: the oldest `limit` messages after it (a resume). Otherwise
  /// the newest `limit` messages (a history page). Either way oldest first.
  bool oldest_first = false;
};

struct HistoryPage {
  StoreError error = StoreError::none;
  std::vector<chat::MessagePtr> messages;  ///< Oldest first.
  bool has_more = false;                   ///< More messages exist past the page's far end.
};

/// Told after each commit attempt, on the commit thread: how many messages
/// the batch held, how long the commit took, and whether it succeeded.
using CommitObserver =
    std::function<void(std::size_t messages, std::chrono::nanoseconds duration, bool ok)>;

/// Called on the store's commit thread after each committed batch, in commit
/// order, before any sender hears of its commit.
using CommitListener = std::function<void(std::span<const chat::MessagePtr>)>;

/// Where chats and messages live (SQLite or MongoDB).
///
/// Every call returns at once; the work runs on the store's own threads and
/// the handler is posted to its associated executor (the calling session's
/// strand), so no I/O thread ever waits on the database.
class Store {
 public:
  using AppendHandler = boost::asio::any_completion_handler<void(AppendResult)>;
  using HistoryHandler = boost::asio::any_completion_handler<void(HistoryPage)>;

  virtual ~Store() = default;

  /// Queues a message for the next group commit. It gets the next sequence
  /// number of its chat, is handed to the commit listener, and only then
  /// is `handler` told.
  virtual void append(chat::PendingMessage message, AppendHandler handler) = 0;

  /// Reads messages of a chat. Sees every message committed before the call.
  virtual void history(chat::ChatKey chat, HistoryQuery query, HistoryHandler handler) = 0;

  /// Whether the last database operation succeeded.
  virtual bool ready() const = 0;

  /// Stops taking appends, commits and announces everything already taken,
  /// and returns when that is done. Idempotent.
  virtual void drain() = 0;
};

/// Asio-style initiating functions over Store (callbacks, use_awaitable, ...).
template <typename CompletionToken>
auto async_history(Store& store, chat::ChatKey chat, HistoryQuery query, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(HistoryPage)>(
      [&store](auto handler, chat::ChatKey key, HistoryQuery q) {
        store.history(std::move(key), q, Store::HistoryHandler(std::move(handler)));
      },
      token, std::move(chat), query);
}

template <typename CompletionToken>
auto async_append(Store& store, chat::PendingMessage message, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(AppendResult)>(
      [&store](auto handler, chat::PendingMessage pending) {
        store.append(std::move(pending), Store::AppendHandler(std::move(handler)));
      },
      token, std::move(message));
}

}  // namespace chatd::store
