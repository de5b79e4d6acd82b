#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "chat/message.h"
#include "store/maintenance.h"
#include "store/outbox.h"

namespace chatd::store {

enum class StoreError {
  none,
  unavailable,    ///< The database failed or is unreachable; nothing was stored.
  overloaded,     ///< Too many appends are waiting; nothing was stored.
  shutting_down,  ///< The store is draining; nothing was stored.
};

std::string_view to_string(StoreError error);

/// Why the store refused a message or a change by the chat's rules (the
/// database is fine; nothing was stored). Its to_string() is the error code
/// clients get (docs/protocol.md).
enum class Refusal {
  none,
  blocked,             ///< The chat's other user blocks the sender.
  not_found,           ///< No message with that seq or id in the chat.
  not_your_message,    ///< Only the sender edits or deletes a message.
  deleted,             ///< The message is a tombstone already.
  edit_window_passed,  ///< Older than EDIT_WINDOW_SECONDS.
};

std::string_view to_string(Refusal refusal);

struct AppendResult {
  StoreError error = StoreError::none;
  chat::MessagePtr message;  ///< The committed message when error is none.
  bool duplicate = false;    ///< The client id was seen before; `message` is the original.
  /// Set (with error none and no message) when the chat's rules refused it.
  Refusal refusal = Refusal::none;
};

struct HistoryQuery {
  std::uint64_t before_seq = 0;  ///< Only messages with seq < before_seq; 0 = no bound.
  std::uint64_t after_seq = 0;   ///< Only messages with seq > after_seq.
  std::size_t limit = 100;
  /// With after_seq: the oldest `limit` messages after it (a resume). Otherwise
  /// the newest `limit` messages (a history page). Either way oldest first.
  bool oldest_first = false;
  /// The page also ends once its messages pass this many bytes (their text
  /// and sender, plus kMessageOverheadBytes each), with at least one message,
  /// and `has_more` says the rest is still there; 0 = no such bound. A session
  /// asks for what its send queue has room for.
  std::size_t max_bytes = 0;
  /// Messages only (a history page), or every entry, changes too (a resume).
  bool messages_only = true;
  /// Leaves tombstones out (a v1 history).
  bool skip_deleted = false;
};

/// What one message adds to a page beyond its text and sender: its frame's
/// keys, id, seq and timestamp.
inline constexpr std::size_t kMessageOverheadBytes = 96;

/// The bytes a message is counted for in HistoryQuery::max_bytes.
inline std::size_t page_bytes(const chat::Message& message) {
  return message.text.size() + message.sender.size() + kMessageOverheadBytes;
}

struct HistoryPage {
  StoreError error = StoreError::none;
  std::vector<chat::MessagePtr> messages;  ///< Oldest first.
  bool has_more = false;                   ///< More messages exist past the page's far end.
};

/// Fills a history page row by row within its query's `limit` and `max_bytes`:
/// every backend's read loop, so that they all cut a page the same way.
class PageFill {
 public:
  PageFill(const HistoryQuery& query, HistoryPage& page) : query_(query), page_(page) {}
  /// Adds the next message read (the query asks the database for one more
  /// than `limit`), or returns false when the page is full: `has_more` is
  /// then set, and the caller stops reading.
  bool add(chat::MessagePtr message) {
    const std::size_t bytes = page_bytes(*message);
    const bool over_budget =
        query_.max_bytes != 0 && !page_.messages.empty() && bytes_ + bytes > query_.max_bytes;
    if (page_.messages.size() >= query_.limit || over_budget) {
      page_.has_more = true;
      return false;
    }
    bytes_ += bytes;
    page_.messages.push_back(std::move(message));
    return true;
  }

 private:
  const HistoryQuery& query_;
  HistoryPage& page_;
  std::size_t bytes_ = 0;
};

/// How far each user of a chat has read (read receipts), 0 = nothing yet,
/// and who blocks whom; what a connection learns of its chat when it opens.
struct ReadMarks {
  StoreError error = StoreError::none;
  std::uint64_t first = 0;     ///< The chat key's first user.
  std::uint64_t second = 0;    ///< The chat key's second user.
  bool first_blocks = false;   ///< The first user blocks the second.
  bool second_blocks = false;  ///< The second user blocks the first.
  /// The chat's oldest kept entry (retention removes older ones), 0 = none.
  std::uint64_t first_seq = 0;
  /// The chat's newest entry as far as the store knows (it may lag behind a
  /// commit in progress, never run ahead), 0 = none.
  std::uint64_t last_seq = 0;

  std::uint64_t of(const chat::ChatKey& chat, std::string_view user) const {
    return user == chat.first() ? first : second;
  }
  /// Whether `user` blocks the chat's other user.
  bool blocks(const chat::ChatKey& chat, std::string_view user) const {
    return user == chat.first() ? first_blocks : second_blocks;
  }
};

/// The users one user blocks, sorted.
struct BlockList {
  StoreError error = StoreError::none;
  std::vector<std::string> users;
};

/// One chat of a user's conversation list.
struct Conversation {
  chat::ChatKey chat;
  chat::MessagePtr last;       ///< The newest message.
  std::uint64_t read_seq = 0;  ///< How far the user has read.
  std::uint64_t unread = 0;    ///< Messages after read_seq that the peer sent.
};

struct ConversationList {
  StoreError error = StoreError::none;
  std::vector<Conversation> conversations;  ///< Newest activity first.
};

/// How full a store's queues are and how much they refused, read by /metrics
/// at scrape time.
struct QueueStats {
  std::size_t queued_appends = 0;     ///< Appends waiting for a group commit.
  std::size_t queued_reads = 0;       ///< Reads and receipts waiting for a reader thread.
  std::uint64_t refused_appends = 0;  ///< Appends answered `overloaded` (the queue was full).
  std::uint64_t refused_reads = 0;    ///< Reads answered `overloaded` (the queue was full).
  std::uint64_t write_batches = 0;    ///< Group commits made.
  /// Commands the writer sent to its server for them (MongoDB; 0 on SQLite).
  std::uint64_t write_commands = 0;
};

/// A new message made of a pending one, stamped `timestamp_ms` with a fresh id;
/// its seq is left 0 for the backend to assign.
std::shared_ptr<chat::Message> make_message(const chat::PendingMessage& pending,
                                            std::int64_t timestamp_ms);

/// Whether `change` (an edit or remove by its sender) may change `target`
/// (nullptr: no such entry), at `now_ms`: the rules every backend applies.
Refusal check_change(const chat::Message* target, const chat::PendingMessage& change,
                     std::int64_t now_ms);
/// Whether an entry of this kind is refused from a user the other blocks:
/// messages and edits are; deletes, blocks and unblocks are not.
bool refused_when_blocked(chat::EntryKind kind);
/// The answer to an append the chat's rules refused.
AppendResult refused(Refusal refusal);

/// The answer to a send whose client id is stored already: a copy of the
/// original, told to the connection that sent it again.
AppendResult duplicate_of(const chat::Message& original, chat::ConnectionId origin);

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
  using ReadMarksHandler = boost::asio::any_completion_handler<void(ReadMarks)>;
  using ConversationsHandler = boost::asio::any_completion_handler<void(ConversationList)>;
  using BlocksHandler = boost::asio::any_completion_handler<void(BlockList)>;

  virtual ~Store() = default;

  /// Queues a message for the next group commit. It gets the next sequence
  /// number of its chat, is handed to the commit listener, and only then
  /// is `handler` told. A change (edit, remove, block, ...) is an append too:
  /// the writer applies it with the chat's rules and it takes the next seq
  /// (AppendResult::refusal when a rule refuses it).
  virtual void append(chat::PendingMessage message, AppendHandler handler) = 0;

  /// Reads messages of a chat. Sees every message committed before the call.
  virtual void history(chat::ChatKey chat, HistoryQuery query, HistoryHandler handler) = 0;

  /// Records that `user` has read `chat` up to `seq` (a receipt lower than one
  /// already stored changes nothing) and answers with both users' marks.
  virtual void mark_read(chat::ChatKey chat, std::string user, std::uint64_t seq,
                         ReadMarksHandler handler) = 0;

  /// Both users' read marks of a chat.
  virtual void read_marks(chat::ChatKey chat, ReadMarksHandler handler) = 0;

  /// The chats of `user` that have messages, newest activity first, at most
  /// `limit`, each with its last message and the user's unread count.
  virtual void conversations(std::string user, std::size_t limit, ConversationsHandler handler) = 0;

  /// The users `user` blocks.
  virtual void blocks(std::string user, BlocksHandler handler) = 0;

  /// Whether the last database operation succeeded.
  virtual bool ready() const = 0;

  /// The depth of the store's queues and their refusals so far. Any thread.
  virtual QueueStats queue_stats() const = 0;

  /// The webhook outbox, for the one thread that will use it (its own
  /// connection to the database). Throws when the database cannot open one.
  virtual std::unique_ptr<Outbox> make_outbox() = 0;

  /// The operators' side (retention, erasure, export), for the one thread
  /// that will use it. Throws when the database cannot open one.
  virtual std::unique_ptr<Maintenance> make_maintenance() = 0;

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
auto async_read_marks(Store& store, chat::ChatKey chat, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(ReadMarks)>(
      [&store](auto handler, chat::ChatKey key) {
        store.read_marks(std::move(key), Store::ReadMarksHandler(std::move(handler)));
      },
      token, std::move(chat));
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
