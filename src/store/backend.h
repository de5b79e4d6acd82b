#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "store/outbox.h"
#include "store/store.h"

namespace chatd::store {

/// The writer thread's part of a backend: commits one group at a time. A
/// group holds messages and changes (PendingMessage::kind) in the order they
/// came; the committer applies each change with the chat's rules (the sender
/// is not blocked, an edit is the sender's own, ...) and gives it the chat's
/// next seq, as to a message, or refuses it (AppendResult::refusal).
class Committer {
 public:
  virtual ~Committer() = default;

  /// Commits `batch` as one group. `results` holds one entry per message, in
  /// order, each `unavailable` until the committer says otherwise. Returns
  /// whether the commit succeeded (what the CommitObserver is told).
  virtual bool commit(std::span<const chat::PendingMessage> batch,
                      std::vector<AppendResult>& results) = 0;

  /// Puts the group's new messages in the order the commit listener hears
  /// them; batch order unless a backend can commit a chat's messages out of
  /// it. A backend that committed entries of its own for the group (MongoDB's
  /// fillers) adds them here, so that receivers hear of every seq.
  virtual void order_for_listener(std::vector<chat::MessagePtr>& /*committed*/) {}
};

/// A reader thread's part of a backend. Each call answers with its error set
/// when the database failed.
class Reader {
 public:
  virtual ~Reader() = default;

  virtual HistoryPage history(const chat::ChatKey& chat, const HistoryQuery& query) = 0;
  /// Records `user`'s receipt up to `seq` (0: records nothing), then reads both marks.
  virtual ReadMarks mark_read(const chat::ChatKey& chat, const std::string& user,
                              std::uint64_t seq) = 0;
  virtual ConversationList conversations(const std::string& user, std::size_t limit) = 0;
  virtual BlockList blocks(const std::string& user) = 0;
};

/// What a database must provide to be a chatd store; QueuedStore supplies the
/// threads, the queues and the completions. A new backend is a folder with one
/// of these and a line in app/store_factory.cpp; tests/unit/store/contract_test.cpp
/// says what it must do.
class Backend {
 public:
  virtual ~Backend() = default;

  /// Called once, on the writer thread, which owns what it returns (a
  /// connection's prepared statements, a pooled client).
  virtual std::unique_ptr<Committer> make_committer() = 0;
  /// Called once on each reader thread, `index` from 0.
  virtual std::unique_ptr<Reader> make_reader(std::size_t index) = 0;
  /// Called on the webhook sender's thread, which owns what it returns.
  virtual std::unique_ptr<Outbox> make_outbox() = 0;
  /// Called on the maintenance thread, which owns what it returns.
  virtual std::unique_ptr<Maintenance> make_maintenance() = 0;
  /// Whether the last database operation succeeded. Any thread.
  virtual bool ready() const = 0;
  /// Commands the committer has sent its server (a round-trip count; 0 where
  /// there is no server). Any thread.
  virtual std::uint64_t write_commands() const { return 0; }
};

}  // namespace chatd::store
