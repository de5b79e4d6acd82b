#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "chat/message.h"

namespace chatd::store {

/// A maintenance operation failed (the database is unreachable or refused it).
class MaintenanceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One step of a retention pass.
struct PurgeStep {
  std::size_t removed = 0;  ///< Entries removed, at most the step's max_rows.
  bool done = false;        ///< The pass has visited every chat: none older is left.
};

/// One step of an erasure.
struct EraseStep {
  std::size_t messages = 0;  ///< Messages made tombstones.
  std::size_t edits = 0;     ///< The user's edits whose text was removed.
  bool empty() const { return messages + edits == 0; }
};

/// What operators do to the data besides chatting: retention, erasure and
/// export (docs/operations.md). One per backend, owned by the one thread that
/// uses it (store::Maintainer's), with its own connection to the database, so
/// that its work never waits in the store's queues. Every call is bounded (a
/// batch of rows) so that it holds the database for a short while at a time.
/// Each throws MaintenanceError when the database fails.
class Maintenance {
 public:
  virtual ~Maintenance() = default;

  /// Removes at most `max_rows` entries (messages and changes) older than
  /// `before_ms`, a chat's oldest first, visiting a bounded number of chats
  /// from where the last step stopped. A chat's last_seq is kept, so its
  /// seqs go on.
  virtual PurgeStep purge(std::int64_t before_ms, std::size_t max_rows) = 0;

  /// The chats `user` is in (sent to or received from), by chat key after
  /// `after` ("" = from the first), at most `limit`.
  virtual std::vector<chat::ChatKey> chats_of(const std::string& user, const std::string& after,
                                              std::size_t limit) = 0;

  /// The messages of `chat` (tombstones included, changes not) with seq past
  /// `after_seq`, oldest first, at most `limit`.
  virtual std::vector<chat::MessagePtr> messages(const chat::ChatKey& chat, std::uint64_t after_seq,
                                                 std::size_t limit) = 0;

  /// Makes at most `max_rows` of the messages `user` sent in `chat`
  /// tombstones and removes the text of their edits, and says how many of
  /// each: none once none is left.
  virtual EraseStep erase(const chat::ChatKey& chat, const std::string& user,
                          std::size_t max_rows) = 0;

  /// Removes `user`'s read receipts and hides every chat from their
  /// conversation list (until its next message); returns the receipts removed.
  virtual std::size_t forget_user(const std::string& user) = 0;
};

}  // namespace chatd::store
