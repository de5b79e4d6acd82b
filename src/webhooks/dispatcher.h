#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "metrics/registry.h"
#include "store/store.h"
#include "webhooks/event.h"
#include "webhooks/poster.h"
#include "webhooks/webhook_options.h"

namespace chatd::webhooks {

/// Sends the store's webhook outbox to WEBHOOK_URL (docs/webhooks.md).
///
/// Design: one thread of its own owns the outbox (Store::make_outbox, its own
/// database connection) and all of this object's state; the POSTs run on the
/// I/O threads (Poster) and hand their outcome back through a mutex-guarded
/// list. The thread reads a page of pending events, queues them per chat,
/// starts at most WEBHOOK_MAX_IN_FLIGHT POSTs (one per chat, the chat's
/// oldest event, so each chat's order holds), and settles in the store what
/// was delivered or kept as failed. An event is held in memory from its read
/// until its settling is committed, and never read twice meanwhile; at most
/// kMaxHeld are held. Nothing else in chatd waits for it: a dead receiver
/// only makes the outbox longer.
class Dispatcher {
 public:
  /// Throws std::invalid_argument when the URL or CA file cannot be used.
  Dispatcher(boost::asio::io_context& io, store::Store& store, WebhookOptions options,
             metrics::Registry& registry, std::string instance);
  ~Dispatcher();

  /// Starts the thread. Once.
  void start();
  /// Messages with events were committed here: read the outbox now rather
  /// than at the next poll. Any thread; cheap.
  void wake();
  /// Stops starting POSTs, waits for those in flight (at most
  /// WEBHOOK_TIMEOUT_MS), settles them and joins the thread. Idempotent.
  void stop();

  /// The admin API (run on the thread; `done` is called there).
  using FailedList = std::optional<std::vector<store::FailedEvent>>;
  void list_failed(std::size_t limit, std::function<void(FailedList)> done);
  void retry_failed(std::string event_id, std::function<void(std::optional<bool>)> done);

  /// Events held in memory at most (read from the store, not yet settled).
  static constexpr std::size_t kMaxHeld = 4096;

 private:
  using Clock = std::chrono::steady_clock;

  struct Queued {
    Event event;
    std::uint32_t attempts = 0;  ///< Attempts made so far.
  };
  struct ChatQueue {
    std::deque<Queued> events;
    bool in_flight = false;
    Clock::time_point ready_at{};  ///< Not before this (backoff).
  };
  struct Outcome {
    std::string chat;
    Attempt attempt;
  };

  void loop();
  /// One pass: lease, settle, read, start. Returns when to pass again at the latest.
  Clock::time_point pass(store::Outbox& outbox, bool woken);
  void read_pending(store::Outbox& outbox);
  void start_posts();
  void take_outcomes();
  void settle(store::Outbox& outbox);
  void refresh_backlog(store::Outbox& outbox);
  void forget_queues();
  std::chrono::milliseconds backoff(std::uint32_t attempts);

  boost::asio::io_context& io_;
  store::Store& store_;
  const WebhookOptions options_;
  const std::string instance_;
  Poster poster_;

  // Shared with other threads, under mutex_.
  std::mutex mutex_;
  std::condition_variable changed_;
  bool woken_ = false;
  bool stopping_ = false;
  std::vector<Outcome> outcomes_;
  std::vector<std::function<void(store::Outbox&)>> calls_;

  // The thread's own.
  std::map<std::string, ChatQueue> chats_;
  std::unordered_set<std::string> held_;  ///< Ids of events read and not yet settled.
  /// Per chat with events held: the highest seq read, where the next read goes on.
  std::unordered_map<std::string, std::uint64_t> read_up_to_;
  std::size_t in_flight_ = 0;
  std::vector<store::SettledHook> delivered_;  ///< To settle, and their ids:
  std::vector<store::FailedEvent> failed_;
  std::vector<std::string> settling_ids_;
  std::size_t queued_ = 0;             ///< Events read and not attempted yet.
  bool last_page_full_ = false;        ///< The outbox may hold more than was read.
  bool more_pending_ = false;          ///< ... and reading it now would find something.
  Clock::time_point settle_at_{};      ///< When what waits in delivered_/failed_ is written.
  Clock::time_point read_again_at_{};  ///< The soonest read while more is pending.
  bool leased_ = false;
  Clock::time_point lease_renew_at_{};
  Clock::time_point poll_at_{};
  Clock::time_point backlog_at_{};
  std::mt19937 random_{std::random_device{}()};
  std::thread thread_;

  // Metrics.
  metrics::Counter& delivered_total_;
  metrics::Counter& retried_total_;
  metrics::Counter& failed_total_;
  std::map<std::string, metrics::Counter*, std::less<>> attempts_total_;  ///< by outcome
  metrics::Histogram& attempt_seconds_;
  metrics::Gauge& backlog_;
  metrics::Gauge& oldest_seconds_;
  metrics::Gauge& failed_events_;
  metrics::Gauge& sender_;
};

}  // namespace chatd::webhooks
