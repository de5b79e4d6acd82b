#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loadgen/connection.h"
#include "loadgen/histogram.h"
#include "loadgen/options.h"
#include "loadgen/payload.h"

// Design: a chat's two connections live on one io_context (one thread), so
// the sender's window, the receiver's order check and every counter of that
// chat are plain variables. The main thread (chat_load.cpp) only sequences
// the phases (open, sync, send, drain, close) by posting to the workers and
// watching a few atomic counters; the workers' totals are merged after their
// threads end.

namespace chatd::loadgen {

// ---------------------------------------------------------------------------
// Shared between the main thread and the workers
// ---------------------------------------------------------------------------

/// What the main thread watches while a phase runs.
struct Progress {
  std::atomic<unsigned> opened{0};
  std::atomic<unsigned> failed{0};
  std::atomic<unsigned> chats_ready{0};
  std::atomic<unsigned> chats_broken{0};  ///< a connection failed: the chat sits out
  std::atomic<unsigned> workers_drained{0};
  std::atomic<unsigned> alive{0};  ///< connections whose read loop still runs
};

/// When to send, in steady_clock nanoseconds; fixed before sending starts.
struct Schedule {
  std::int64_t start_ns = 0;         ///< warm-up begins
  std::int64_t window_start_ns = 0;  ///< measurement begins
  std::int64_t window_end_ns = 0;    ///< sending stops
  double interval_ns = 0;            ///< fixed rate: between two messages of one sender
  double stagger_ns = 0;             ///< fixed rate: between consecutive senders' first messages
};

/// One worker's counts; merged into one at the end.
struct Totals {
  std::uint64_t sent = 0;  ///< every message, warm-up included
  std::uint64_t delivered = 0;
  std::uint64_t window_sent = 0;       ///< (scheduled) send time inside the window
  std::uint64_t window_delivered = 0;  ///< of those, received by the peer
  std::uint64_t error_frames = 0;
  std::uint64_t foreign_frames = 0;
  std::uint64_t unexpected_frames = 0;
  std::uint64_t misrouted = 0;         ///< a message whose sender is not the peer
  std::uint64_t order_violations = 0;  ///< peer's counter not strictly increasing
  std::uint64_t seq_violations = 0;    ///< chatd's seq not strictly increasing
  std::uint64_t connect_failures = 0;
  std::uint64_t unexpected_ends = 0;  ///< a connection ended before we closed it
  std::int64_t max_send_lag_ns = 0;   ///< fixed rate: latest send behind its schedule
  double total_send_lag_ns = 0;
  LatencyHistogram latency;
  std::map<std::string, std::uint64_t> error_codes;
  std::map<std::string, std::uint64_t> end_reasons;

  void merge(const Totals& other);
};

// ---------------------------------------------------------------------------
// One chat: two connections, each the other's peer
// ---------------------------------------------------------------------------

struct Chat;

/// One connection of a chat: its WebSocket, what it sends, and what it has
/// received from its peer (the order check). Touched by its worker's thread only.
struct Side {
  Side(asio::io_context& io, std::string own_name, const std::string& peer_name,
       const Options& options, std::size_t connection_index);

  WebSocket ws;
  asio::steady_timer wake;  ///< the sender sleeps on it: schedule, window, start, a pong
  std::string name;
  std::string path;
  std::string channel;  ///< Centrifugo: the chat's channel; chatd: empty
  std::size_t index;    ///< global connection number: source address, stagger
  OutgoingFrame out;
  beast::flat_buffer in;
  Chat* chat = nullptr;
  Side* peer = nullptr;

  bool open = false;
  bool ended = false;
  bool writing = false;
  bool broken = false;         ///< ended before we closed it (counted once)
  bool waiting = false;        ///< the sender waits for its window to open
  bool heard_probe = false;    ///< the peer's probe arrived: both sessions are live
  bool pong_due = false;       ///< Centrifugo pinged during a write: pong after it
  bool write_waiting = false;  ///< the sender waits for a pong's write to end
  std::uint64_t next_counter = 1;
  std::uint32_t inflight = 0;  ///< sent, not yet received by the peer nor refused
  std::uint64_t last_counter = 0;
  std::uint64_t last_seq = 0;
};

/// Users "<prefix>u<number>a" and "<prefix>u<number>b", one connection each.
struct Chat {
  Chat(asio::io_context& io, const Options& options, unsigned number)
      : a(io, options.prefix + "u" + std::to_string(number) + "a",
          options.prefix + "u" + std::to_string(number) + "b", options, 2 * std::size_t{number}),
        b(io, options.prefix + "u" + std::to_string(number) + "b",
          options.prefix + "u" + std::to_string(number) + "a", options,
          2 * std::size_t{number} + 1) {
    a.chat = b.chat = this;
    a.peer = &b;
    b.peer = &a;
  }
  Side a;
  Side b;
  bool ready = false;   ///< both probes arrived: the chat sends
  bool broken = false;  ///< a connection failed first: the chat sits out
};

// ---------------------------------------------------------------------------
// A worker: the chats of one thread
// ---------------------------------------------------------------------------

/// The chats of one thread: opens their connections, syncs them, sends on
/// the schedule, receives and checks, and counts everything in its Totals.
/// Every public function but the constructor, add_chat and totals runs on
/// the worker's thread (the main thread posts it there).
class ChatWorker {
 public:
  ChatWorker(asio::io_context& io, const Options& options, const Target& target, Progress& progress,
             unsigned connector_count);

  /// Before the threads start.
  void add_chat(unsigned number);

  // The phases, in order.
  void open_all();  ///< opens every connection, connector_count at a time
  void sync();      ///< each side sends its probe; a chat is ready when both arrived
  void start(const Schedule& schedule);
  void drain();      ///< reports when every message sent is received or refused
  void close_all();  ///< close handshakes
  void abort_all();  ///< what the close handshake did not end

  /// After the thread ended.
  const Totals& totals() const { return totals_; }

 private:
  asio::awaitable<void> connector();

  // Receiving
  asio::awaitable<void> read_loop(Side& side);
  void on_centrifugo_frame(Side& side, std::string_view frame);
  void on_message(Side& side, const ReceivedMessage& message);
  void on_probe(Side& side);
  void on_error_frame(Side& side, const std::string& code);
  void acknowledge(Side& sender);
  void end_unexpectedly(Side& side, const std::string& reason);
  void count_broken(Chat& chat);
  void check_drained();

  // Sending
  asio::awaitable<void> run_sender(Side& side, bool sends);
  asio::awaitable<void> send_at_rate(Side& side);
  asio::awaitable<void> send_windowed(Side& side);
  asio::awaitable<bool> send_message(Side& side, std::int64_t stamp_ns);
  asio::awaitable<bool> write(Side& side);
  void pong(Side& side);
  asio::awaitable<void> write_pong(Side& side);
  std::size_t sender_number(const Side& side) const;

  asio::io_context& io_;
  const Options& options_;
  const Target& target_;
  Progress& progress_;
  const unsigned connector_count_;
  const bool centrifugo_;
  std::deque<std::unique_ptr<Chat>> chats_;
  std::vector<Side*> to_open_;
  std::size_t next_to_open_ = 0;
  Schedule schedule_;
  bool syncing_ = false;
  bool started_ = false;
  bool draining_ = false;
  bool drained_ = false;
  bool closing_ = false;
  Totals totals_;
};

}  // namespace chatd::loadgen
