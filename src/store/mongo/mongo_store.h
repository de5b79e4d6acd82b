#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "store/backend.h"
#include "store/mongo/mongo_connection.h"
#include "store/queued_store.h"

namespace chatd::store::mongo {

struct MongoOptions {
  std::string uri;  ///< MONGO_URI; the database is its path (default "chat").
  /// Messages per group commit, as SQLite's: a batch reserves each chat's
  /// seqs once (one command per chat), so the more messages per chat a batch
  /// holds the fewer commands per message. Inserted 100 per command
  /// (BatchWriter, kInsertChunk).
  std::size_t max_batch = 1024;
  std::size_t max_queued_appends = QueueOptions{}.max_queued_appends;
  std::size_t max_queued_reads = QueueOptions{}.max_queued_reads;
  std::size_t reader_threads = 2;  ///< History reads in flight at once, one client each.
  /// Reconnect backoff: doubles from min to max while the server is away.
  std::chrono::milliseconds retry_min{250};
  std::chrono::milliseconds retry_max{5000};
  /// WEBHOOK_EVENTS lists message.read: a receipt that moves forward is kept
  /// as an event to send (reads.hook_seq).
  bool read_hooks = false;
};

/// The MongoDB backend (libmongoc): one document per message, one per chat.
///
/// QueuedStore's writer thread does group commit through a BatchWriter (every
/// append queued while a bulk write runs goes into the next one, across
/// chats; see BatchWriter for the round trips and sequence numbers), its
/// reader threads serve reads through MongoReader, each with a pooled client,
/// as have the webhook sender's MongoOutbox and the maintenance thread's
/// MongoMaintenance (retention, erasure, export). A monitor thread of this
/// backend owns reachability: at start it creates the indexes, retrying with
/// backoff while the server is away, and whenever an operation finds the
/// server gone it pings until it is back. While the store is not ready,
/// appends and reads fail at once with `unavailable` instead of each waiting
/// out the driver's server selection, so /readyz says 503, new sessions close
/// 1013 and sends get store_unavailable — and all of it heals by itself when
/// the server returns.
class MongoBackend final : public Backend {
 public:
  /// Parses the URI and starts the monitor; connecting happens in the
  /// background. Throws MongoError when the URI cannot work.
  explicit MongoBackend(const MongoOptions& options);
  ~MongoBackend() override;

  // Backend
  std::unique_ptr<Committer> make_committer() override;
  std::unique_ptr<Reader> make_reader(std::size_t index) override;
  std::unique_ptr<Outbox> make_outbox() override;
  std::unique_ptr<Maintenance> make_maintenance() override;
  bool ready() const override { return ready_.load(std::memory_order_relaxed); }
  std::uint64_t write_commands() const override {
    return write_commands_.load(std::memory_order_relaxed);
  }
  /// Counted by the committer (CommandCounter) while it writes.
  std::atomic<std::uint64_t>& write_command_counter() { return write_commands_; }
  /// Whether the server enforces unique client ids (else the writer looks
  /// them up: FerretDB 1.x). Known once the indexes are made.
  bool client_id_index() const { return client_id_index_.load(std::memory_order_relaxed); }

  const Connection& connection() const { return connection_; }
  bool read_hooks() const { return options_.read_hooks; }
  /// An operation found the server unreachable: not ready until a ping works.
  void mark_unreachable();

 private:
  void monitor_loop();

  const MongoOptions options_;
  Connection connection_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> client_id_index_{false};
  std::atomic<std::uint64_t> write_commands_{0};

  std::mutex state_mutex_;  ///< Guards the monitor's state and stopping_.
  std::condition_variable state_changed_;
  bool indexes_created_ = false;
  bool stopping_ = false;
  std::thread monitor_;
};

/// The MongoDB store: QueuedStore in front of MongoBackend.
class MongoStore final : public QueuedStore {
 public:
  MongoStore(const MongoOptions& options, CommitListener listener, CommitObserver observer = {});

  const std::string& description() const;
};

}  // namespace chatd::store::mongo
