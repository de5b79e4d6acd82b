#include "loadgen/storm.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <vector>

#include "loadgen/clock.h"
#include "loadgen/histogram.h"
#include "loadgen/io_pool.h"
#include "loadgen/payload.h"

namespace chatd::loadgen {
namespace {

/// What the main thread watches; the chat numbers are handed out here too,
/// so a fast thread simply takes more of them.
struct StormProgress {
  std::atomic<unsigned> next_chat{0};
  std::atomic<unsigned> chats_done{0};  ///< verified or failed
  std::atomic<unsigned> alive{0};       ///< connections whose read loop still runs
};

struct StormTotals {
  std::uint64_t attempted = 0;  ///< a chat whose first connection failed skips its second
  std::uint64_t established = 0;
  std::uint64_t connect_failures = 0;
  std::uint64_t verified = 0;
  std::uint64_t unexpected_ends = 0;
  std::uint64_t error_frames = 0;
  std::int64_t last_established_ns = 0;
  std::int64_t last_verified_ns = 0;
  LatencyHistogram handshake;  ///< TCP connect + WebSocket handshake
  LatencyHistogram verify;     ///< from the storm's start to the chat's verification
  std::map<std::string, std::uint64_t> end_reasons;

  void merge(const StormTotals& other) {
    attempted += other.attempted;
    established += other.established;
    connect_failures += other.connect_failures;
    verified += other.verified;
    unexpected_ends += other.unexpected_ends;
    error_frames += other.error_frames;
    last_established_ns = std::max(last_established_ns, other.last_established_ns);
    last_verified_ns = std::max(last_verified_ns, other.last_verified_ns);
    handshake.merge(other.handshake);
    verify.merge(other.verify);
    for (const auto& [reason, count] : other.end_reasons) end_reasons[reason] += count;
  }
};

struct StormChat {
  StormChat(asio::io_context& io, const std::string& prefix, unsigned number)
      : first(io),
        second(io),
        first_name(prefix + "s" + std::to_string(number) + "a"),
        second_name(prefix + "s" + std::to_string(number) + "b"),
        index(number) {}
  WebSocket first;
  WebSocket second;
  std::string first_name;
  std::string second_name;
  unsigned index;
  beast::flat_buffer first_in;
  beast::flat_buffer second_in;
  bool first_open = false;
  bool second_open = false;
  bool first_ended = false;
  bool second_ended = false;
  bool done = false;
};

class StormWorker {
 public:
  StormWorker(asio::io_context& io, const Options& options, const Target& target,
              StormProgress& progress, unsigned slots)
      : io_(io), options_(options), target_(target), progress_(progress), slots_(slots) {}

  void start(std::int64_t start_ns) {
    start_ns_ = start_ns;
    for (unsigned i = 0; i < slots_; ++i) spawn(io_, slot());
  }
  void close_all() {
    closing_ = true;
    for (auto& chat : chats_) {
      if (chat->first_open && !chat->first_ended) spawn(io_, close_websocket(chat->first));
      if (chat->second_open && !chat->second_ended) spawn(io_, close_websocket(chat->second));
    }
  }
  void abort_all() {
    for (auto& chat : chats_) {
      if (chat->first_open && !chat->first_ended) abort_websocket(chat->first);
      if (chat->second_open && !chat->second_ended) abort_websocket(chat->second);
    }
  }
  const StormTotals& totals() const { return totals_; }

 private:
  /// One connection being opened at a time, chat after chat.
  asio::awaitable<void> slot() {
    const unsigned chat_count = options_.storm / 2;
    for (;;) {
      const unsigned number = progress_.next_chat.fetch_add(1);
      if (number >= chat_count || closing_) break;
      chats_.push_back(std::make_unique<StormChat>(io_, options_.prefix, number));
      StormChat& chat = *chats_.back();
      // GCC 12.2 miscompiles `if (co_await ...)` in a coroutine with no local
      // variable before it (SIGILL at run time): await into a variable first.
      const bool first_open = co_await open(chat.first, 2 * std::size_t{number},
                                            "/ws/" + chat.first_name + "/" + chat.second_name);
      if (!first_open) {
        finish(chat, false);
        continue;
      }
      chat.first_open = true;
      spawn(io_, read_loop(chat, true));
      const bool second_open = co_await open(chat.second, 2 * std::size_t{number} + 1,
                                             "/ws/" + chat.second_name + "/" + chat.first_name);
      if (!second_open) {
        finish(chat, false);
        continue;
      }
      chat.second_open = true;
      spawn(io_, read_loop(chat, false));
      // One message proves both users verified and the peer's session live.
      OutgoingFrame frame(chat.first_name, options_.prefix, 0);
      frame.stamp(1, now_ns());
      const auto [error, bytes] =
          co_await chat.first.async_write(asio::buffer(frame.data()), use_tuple);
      if (error) {
        ++totals_.end_reasons["write failed: " + error.message()];
        finish(chat, false);
      }
    }
  }

  asio::awaitable<bool> open(WebSocket& ws, std::size_t index, std::string path) {
    std::string failure;
    ++totals_.attempted;
    const std::int64_t began = now_ns();
    const auto error = co_await open_websocket(ws, target_, index, path, failure);
    if (error) {
      ++totals_.connect_failures;
      ++totals_.end_reasons["connect failed: " + failure];
      co_return false;
    }
    const std::int64_t now = now_ns();
    totals_.handshake.record(now - began);
    ++totals_.established;
    totals_.last_established_ns = std::max(totals_.last_established_ns, now);
    progress_.alive.fetch_add(1);
    co_return true;
  }

  asio::awaitable<void> read_loop(StormChat& chat, bool first) {
    WebSocket& ws = first ? chat.first : chat.second;
    beast::flat_buffer& in = first ? chat.first_in : chat.second_in;
    ReceivedMessage message;
    std::string error_code;
    for (;;) {
      const auto [error, bytes] = co_await ws.async_read(in, use_tuple);
      if (error) {
        if (!closing_) {
          ++totals_.unexpected_ends;
          ++totals_.end_reasons[describe_end(ws, error)];
          finish(chat, false);
        }
        break;
      }
      const std::string_view frame(static_cast<const char*>(in.data().data()), bytes);
      const FrameKind kind = classify_frame(frame, options_.prefix, message, error_code);
      if (kind == FrameKind::error) {
        ++totals_.error_frames;
        ++totals_.end_reasons["error frame: " + error_code];
        finish(chat, false);
      } else if (!first && kind == FrameKind::message && message.sender == chat.first_name) {
        finish(chat, true);
      }
      in.consume(in.size());
    }
    (first ? chat.first_ended : chat.second_ended) = true;
    progress_.alive.fetch_sub(1);
  }

  void finish(StormChat& chat, bool verified) {
    if (chat.done) return;
    chat.done = true;
    if (verified) {
      const std::int64_t now = now_ns();
      ++totals_.verified;
      totals_.last_verified_ns = std::max(totals_.last_verified_ns, now);
      totals_.verify.record(now - start_ns_);
    }
    progress_.chats_done.fetch_add(1);
  }

  asio::io_context& io_;
  const Options& options_;
  const Target& target_;
  StormProgress& progress_;
  const unsigned slots_;
  std::int64_t start_ns_ = 0;
  bool closing_ = false;
  std::deque<std::unique_ptr<StormChat>> chats_;
  StormTotals totals_;
};

}  // namespace

int run_storm(const Options& options, const Target& target, Report& report) {
  const unsigned threads = options.threads;
  const unsigned chats = options.storm / 2;
  StormProgress progress;
  IoPool pool(threads);
  std::vector<std::unique_ptr<StormWorker>> workers;
  const unsigned slots = std::max(1u, (options.concurrency + threads - 1) / threads);
  for (unsigned i = 0; i < threads; ++i) {
    workers.push_back(
        std::make_unique<StormWorker>(pool.context(i), options, target, progress, slots));
  }
  pool.start();
  std::cerr << "run " << options.prefix << ": storm of " << options.storm << " connections ("
            << chats << " chats) to " << target.host_header << ", " << slots * threads
            << " at once\n";

  const std::int64_t start_ns = now_ns();
  for (unsigned i = 0; i < threads; ++i) {
    asio::post(pool.context(i), [worker = workers[i].get(), start_ns] { worker->start(start_ns); });
  }
  const bool complete =
      wait_for([&] { return progress.chats_done == chats; }, seconds(options.setup_timeout));
  const double elapsed = static_cast<double>(now_ns() - start_ns) / 1e9;
  std::cerr << "  " << (complete ? "complete" : "timed out") << " after " << elapsed << " s\n";

  for (unsigned i = 0; i < threads; ++i) {
    asio::post(pool.context(i), [worker = workers[i].get()] { worker->close_all(); });
  }
  if (!wait_for([&] { return progress.alive == 0; }, target.timeout + std::chrono::seconds(1))) {
    for (unsigned i = 0; i < threads; ++i) {
      asio::post(pool.context(i), [worker = workers[i].get()] { worker->abort_all(); });
    }
  }
  pool.finish(std::chrono::seconds(2));

  StormTotals totals;
  for (const auto& worker : workers) totals.merge(worker->totals());
  const double open_seconds =
      totals.established > 0 ? static_cast<double>(totals.last_established_ns - start_ns) / 1e9 : 0;
  const double verify_seconds =
      totals.verified > 0 ? static_cast<double>(totals.last_verified_ns - start_ns) / 1e9 : 0;
  report.add("connections_attempted", static_cast<double>(totals.attempted), "connections");
  report.add("sessions_established", static_cast<double>(totals.established), "connections");
  report.add("connect_failures", static_cast<double>(totals.connect_failures), "connections");
  report.add("open_seconds", open_seconds, "s");
  report.add("sessions_per_s",
             open_seconds > 0 ? static_cast<double>(totals.established) / open_seconds : 0,
             "sessions/s");
  report.add("chats_verified", static_cast<double>(totals.verified), "chats");
  report.add("verify_seconds", verify_seconds, "s");
  report.add("chats_verified_per_s",
             verify_seconds > 0 ? static_cast<double>(totals.verified) / verify_seconds : 0,
             "chats/s");
  report.add_latency("handshake", totals.handshake);
  report.add("unexpected_closes", static_cast<double>(totals.unexpected_ends), "connections");
  report.add("error_frames", static_cast<double>(totals.error_frames), "frames");
  for (const auto& [reason, count] : totals.end_reasons) {
    std::cerr << "  " << reason << ": " << count << "\n";
  }
  const bool all_good = totals.established == options.storm && totals.verified == chats &&
                        totals.unexpected_ends == 0;
  return all_good ? 0 : 1;
}

}  // namespace chatd::loadgen
