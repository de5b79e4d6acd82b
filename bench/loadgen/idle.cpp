#include "loadgen/idle.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/json.hpp>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "loadgen/centrifugo.h"
#include "loadgen/clock.h"
#include "loadgen/histogram.h"
#include "loadgen/io_pool.h"
#include "loadgen/process_memory.h"

namespace chatd::loadgen {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

/// What the main thread watches. Connection numbers are handed out here, up
/// to `limit` (the end of the current step), so a fast thread takes more.
struct IdleProgress {
  std::atomic<unsigned> next{0};
  std::atomic<unsigned> limit{0};
  std::atomic<unsigned> settled{0};  ///< ready or failed
  std::atomic<unsigned> ready{0};
  std::atomic<unsigned> alive{0};  ///< connections whose read loop still runs
  std::atomic<unsigned> lost{0};   ///< ready connections that ended before we closed them
};

struct IdleTotals {
  std::uint64_t ready = 0;
  std::uint64_t connect_failures = 0;
  std::uint64_t not_ready = 0;  ///< open, but never got past the history in time
  std::uint64_t unexpected_ends = 0;
  std::uint64_t error_frames = 0;
  std::uint64_t pings = 0;  ///< keep-alive pings (chatd's: Beast answers; Centrifugo's: we do)
  LatencyHistogram handshake;
  LatencyHistogram ready_time;  ///< connect start -> past the history
  std::map<std::string, std::uint64_t> end_reasons;

  void merge(const IdleTotals& other) {
    ready += other.ready;
    connect_failures += other.connect_failures;
    not_ready += other.not_ready;
    unexpected_ends += other.unexpected_ends;
    error_frames += other.error_frames;
    pings += other.pings;
    handshake.merge(other.handshake);
    ready_time.merge(other.ready_time);
    for (const auto& [reason, count] : other.end_reasons) end_reasons[reason] += count;
  }
};

/// One idle connection. Kept small: the load generator holds as many as chatd.
struct IdleConnection {
  IdleConnection(asio::io_context& io, std::string target) : ws(io), path(std::move(target)) {}
  WebSocket ws;
  beast::flat_buffer in;
  std::string path;
  asio::steady_timer* waiter = nullptr;  ///< the opening slot, while it waits for readiness
  std::int64_t began_ns = 0;
  bool settled = false;
  bool ready = false;
  bool writing = false;  ///< Centrifugo: a pong is being written
};

/// `<p>i<k>` and `<p>j<k>`: connection 2k is user <p>i<k> with peer <p>j<k>
/// (chatd: /ws/<p>i<k>/<p>j<k>), 2k+1 the other way.
std::pair<std::string, std::string> users_of(const std::string& prefix, unsigned number) {
  const std::string chat = std::to_string(number / 2);
  std::string first = prefix + "i" + chat;
  std::string second = prefix + "j" + chat;
  if (number % 2 == 0) return {std::move(first), std::move(second)};
  return {std::move(second), std::move(first)};
}

std::string path_of(const Options& options, unsigned number) {
  if (options.centrifugo()) return std::string(centrifugo::kPath);
  const auto [user, peer] = users_of(options.prefix, number);
  return "/ws/" + user + "/" + peer;
}

/// "history", "error", ... of a v2 frame; empty when it has none.
std::string frame_type(std::string_view frame) {
  boost::json::error_code error;
  const auto value = boost::json::parse(frame, error);
  const auto* object = error ? nullptr : value.if_object();
  const auto* type = object != nullptr ? object->if_contains("type") : nullptr;
  return type != nullptr && type->is_string() ? std::string(type->get_string()) : std::string();
}

class IdleWorker {
 public:
  IdleWorker(asio::io_context& io, const Options& options, const Target& target,
             IdleProgress& progress, unsigned slots)
      : io_(io), options_(options), target_(target), progress_(progress), slots_(slots) {}

  /// Opens connections until the progress's limit (the current step) is reached.
  void open_step() {
    for (unsigned i = 0; i < slots_; ++i) spawn(io_, slot());
  }
  void close_all() {
    closing_ = true;
    for (auto& connection : connections_) {
      if (!connection->settled || ended(*connection)) continue;
      if (connection->writing) {
        abort_websocket(connection->ws);  // one write at a time: the close cannot wait
      } else {
        spawn(io_, close_websocket(connection->ws));
      }
    }
  }
  void abort_all() {
    for (auto& connection : connections_) {
      if (!ended(*connection)) abort_websocket(connection->ws);
    }
  }
  const IdleTotals& totals() const { return totals_; }

 private:
  bool ended(const IdleConnection& connection) const {
    return !beast::get_lowest_layer(connection.ws).socket().is_open();
  }

  bool take_number(unsigned& number) {
    number = progress_.next.load();
    do {
      if (number >= progress_.limit.load()) return false;
    } while (!progress_.next.compare_exchange_weak(number, number + 1));
    return true;
  }

  /// One connection being opened at a time: connect, handshake, wait until ready.
  asio::awaitable<void> slot() {
    asio::steady_timer wait(io_);
    unsigned number = 0;
    while (!closing_ && take_number(number)) {
      connections_.push_back(std::make_unique<IdleConnection>(io_, path_of(options_, number)));
      IdleConnection& connection = *connections_.back();
      connection.began_ns = now_ns();
      std::string failure;
      const bool v2 = options_.protocol == "v2";
      const auto error = co_await open_websocket(connection.ws, target_, number, connection.path,
                                                 failure, v2 ? "chat.v2" : "");
      if (error) {
        ++totals_.connect_failures;
        ++totals_.end_reasons["connect failed: " + failure];
        settle(connection, false);
        abort_websocket(connection.ws);
        continue;
      }
      totals_.handshake.record(now_ns() - connection.began_ns);
      if (options_.centrifugo()) {
        // Ready once connected and subscribed to the chat's channel.
        const auto [user, peer] = users_of(options_.prefix, number);
        const std::string token = centrifugo::connection_token(user, options_.centrifugo_secret);
        const bool joined =
            co_await centrifugo::join(connection.ws, connection.in, token,
                                      centrifugo::channel_of(user, peer), target_.timeout, failure);
        if (!joined) {
          ++totals_.not_ready;
          ++totals_.end_reasons["not subscribed: " + failure];
          settle(connection, false);
          abort_websocket(connection.ws);
          continue;
        }
        progress_.alive.fetch_add(1);
        connection.in.shrink_to_fit();
        settle(connection, true);
        spawn(io_, read_loop(connection));
        continue;
      }
      progress_.alive.fetch_add(1);
      if (!v2) {
        // Seen during a read: the pong says chatd's read loop runs (so its
        // history is queued); later pings are chatd's keep-alive, answered by Beast.
        connection.ws.control_callback(
            [this, &connection](websocket::frame_type kind, beast::string_view) {
              if (kind == websocket::frame_type::pong) settle(connection, true);
              if (kind == websocket::frame_type::ping) ++totals_.pings;
            });
      } else {
        connection.ws.control_callback([this](websocket::frame_type kind, beast::string_view) {
          if (kind == websocket::frame_type::ping) ++totals_.pings;
        });
      }
      spawn(io_, read_loop(connection));
      connection.waiter = &wait;
      wait.expires_after(target_.timeout);
      if (!v2) {
        const auto [ping_error] = co_await connection.ws.async_ping({}, use_tuple);
        if (ping_error && !connection.settled) {
          ++totals_.end_reasons["ping failed: " + ping_error.message()];
          settle(connection, false);
        }
      }
      if (!connection.settled) co_await wait.async_wait(use_tuple);
      connection.waiter = nullptr;
      if (!connection.settled) {
        ++totals_.not_ready;
        ++totals_.end_reasons["not past the history within --connect-timeout"];
        settle(connection, false);
      }
    }
  }

  asio::awaitable<void> read_loop(IdleConnection& connection) {
    const bool v2 = options_.protocol == "v2";
    for (;;) {
      const auto [error, bytes] = co_await connection.ws.async_read(connection.in, use_tuple);
      if (error) {
        if (!closing_) {
          ++totals_.unexpected_ends;
          ++totals_.end_reasons[describe_end(connection.ws, error)];
          if (connection.ready) progress_.lost.fetch_add(1);
          settle(connection, false);
        }
        break;
      }
      const std::string_view frame(static_cast<const char*>(connection.in.data().data()), bytes);
      if (options_.centrifugo()) {
        const bool pinged = on_centrifugo_frame(frame);
        connection.in.consume(connection.in.size());
        connection.in.shrink_to_fit();
        if (pinged) {
          connection.writing = true;
          const auto [pong_error, pong_bytes] =
              co_await connection.ws.async_write(asio::buffer(centrifugo::kPong), use_tuple);
          connection.writing = false;
          if (pong_error && !closing_)
            ++totals_.end_reasons["pong failed: " + pong_error.message()];
        }
        continue;
      }
      const std::string type = frame_type(frame);
      if (type == "error") {
        ++totals_.error_frames;
        ++totals_.end_reasons["error frame"];
      } else if (v2 && type == "history") {
        settle(connection, true);
      }
      connection.in.consume(connection.in.size());
      connection.in.shrink_to_fit();  // an idle connection keeps no buffer
    }
    progress_.alive.fetch_sub(1);
  }

  /// Counts a Centrifugo frame's errors and pings; true when it holds a ping.
  bool on_centrifugo_frame(std::string_view frame) {
    bool pinged = false;
    ReceivedMessage ignored;
    std::string error_code;
    centrifugo::for_each_line(frame, [&](std::string_view line) {
      const auto kind = centrifugo::classify_line(line, {}, ignored, error_code);
      if (kind == centrifugo::LineKind::error) {
        ++totals_.error_frames;
        ++totals_.end_reasons["error reply " + error_code];
      } else if (kind == centrifugo::LineKind::ping) {
        ++totals_.pings;
        pinged = true;
      }
    });
    return pinged;
  }

  void settle(IdleConnection& connection, bool ready) {
    if (connection.settled) return;
    connection.settled = true;
    connection.ready = ready;
    if (ready) {
      ++totals_.ready;
      totals_.ready_time.record(now_ns() - connection.began_ns);
      progress_.ready.fetch_add(1);
    }
    progress_.settled.fetch_add(1);
    if (connection.waiter != nullptr) connection.waiter->cancel();
  }

  asio::io_context& io_;
  const Options& options_;
  const Target& target_;
  IdleProgress& progress_;
  const unsigned slots_;
  bool closing_ = false;
  std::deque<std::unique_ptr<IdleConnection>> connections_;
  IdleTotals totals_;
};

/// One RSS sample of chatd and of this process, after `--settle` quiet seconds.
struct Sample {
  ProcessMemory server;
  ProcessMemory own;
  std::uint64_t tcp_kernel = 0;
  unsigned ready = 0;
};

bool take_sample(const Options& options, pid_t pid, unsigned ready, Sample& sample) {
  std::this_thread::sleep_for(seconds(options.settle));
  const auto server = read_process_memory(pid);
  if (!server) return false;
  sample.server = *server;
  sample.own = read_own_memory().value_or(ProcessMemory{});
  sample.tcp_kernel = tcp_kernel_memory().value_or(0);
  sample.ready = ready;
  return true;
}

double per_connection(std::uint64_t after, std::uint64_t before, unsigned connections) {
  if (connections == 0) return 0;
  return (static_cast<double>(after) - static_cast<double>(before)) / connections;
}

}  // namespace

int run_idle(const Options& options, const Target& target, Report& report) {
  const unsigned total = options.idle;
  const pid_t pid = options.server_pid != 0 ? static_cast<pid_t>(options.server_pid)
                                            : find_listener_pid(target.server.port());
  if (pid == 0 || !read_process_memory(pid)) {
    std::cerr << "--idle: cannot read the server's memory: no process listening on port "
              << target.server.port() << " is visible; pass --server-pid\n";
    return 2;
  }
  const std::uint64_t descriptors = raise_descriptor_limit();
  if (total + 32 > descriptors) {
    std::cerr << "--idle " << total << ": this process may open " << descriptors
              << " descriptors (ulimit -n), one per connection; split the run over several "
                 "chatd_loadgen processes with different --prefix (bench/README.md)\n";
    return 2;
  }

  const unsigned threads = options.threads;
  IdleProgress progress;
  IoPool pool(threads);
  std::vector<std::unique_ptr<IdleWorker>> workers;
  const unsigned slots = std::max(1u, (options.concurrency + threads - 1) / threads);
  for (unsigned i = 0; i < threads; ++i) {
    workers.push_back(
        std::make_unique<IdleWorker>(pool.context(i), options, target, progress, slots));
  }
  pool.start();
  std::cerr << "run " << options.prefix << ": " << total << " idle connections (protocol "
            << options.protocol << ") to " << target.host_header << ", server pid " << pid << ", "
            << options.steps << " steps\n";

  bool complete = true;
  std::vector<Sample> samples(1);
  if (!take_sample(options, pid, 0, samples[0])) return 2;
  std::cerr << "  before: server RSS " << samples[0].server.rss / kMiB << " MiB\n";
  for (unsigned step = 1; step <= options.steps; ++step) {
    const unsigned limit = static_cast<unsigned>(std::uint64_t{total} * step / options.steps);
    progress.limit = limit;
    for (unsigned i = 0; i < threads; ++i) {
      asio::post(pool.context(i), [worker = workers[i].get()] { worker->open_step(); });
    }
    complete &= wait_for([&] { return progress.settled >= limit; }, seconds(options.setup_timeout));
    Sample sample;
    if (!take_sample(options, pid, progress.ready, sample)) {
      std::cerr << "  server (pid " << pid << ") is gone\n";
      complete = false;
      break;
    }
    std::cerr << "  step " << step << ": " << sample.ready << " ready, server RSS "
              << sample.server.rss / kMiB << " MiB, "
              << per_connection(sample.server.rss, samples[0].server.rss, sample.ready)
              << " bytes per connection; load generator RSS " << sample.own.rss / kMiB << " MiB\n";
    samples.push_back(sample);
  }
  std::cerr << "  holding " << options.hold << " s\n";
  std::this_thread::sleep_for(seconds(options.hold));
  Sample held;
  const bool held_ok = take_sample(options, pid, progress.ready - progress.lost, held);

  for (unsigned i = 0; i < threads; ++i) {
    asio::post(pool.context(i), [worker = workers[i].get()] { worker->close_all(); });
  }
  if (!wait_for([&] { return progress.alive == 0; }, target.timeout + std::chrono::seconds(5))) {
    for (unsigned i = 0; i < threads; ++i) {
      asio::post(pool.context(i), [worker = workers[i].get()] { worker->abort_all(); });
    }
  }
  pool.finish(std::chrono::seconds(2));

  IdleTotals totals;
  for (const auto& worker : workers) totals.merge(worker->totals());
  const Sample& before = samples.front();
  const Sample& after = samples.back();
  report.add("connections_requested", total, "connections");
  report.add("connections_ready", static_cast<double>(totals.ready), "connections");
  report.add("connect_failures", static_cast<double>(totals.connect_failures), "connections");
  report.add("not_ready", static_cast<double>(totals.not_ready), "connections");
  report.add("unexpected_closes", static_cast<double>(totals.unexpected_ends), "connections");
  report.add("error_frames", static_cast<double>(totals.error_frames), "frames");
  report.add("chatd_pid", pid, "pid");
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const std::string name = i == 0 ? "before" : "step" + std::to_string(i);
    report.add("chatd_rss_" + name, samples[i].server.rss / kMiB, "MiB");
  }
  if (held_ok) report.add("chatd_rss_held", held.server.rss / kMiB, "MiB");
  report.add("chatd_rss_anon_before", before.server.rss_anon / kMiB, "MiB");
  report.add("chatd_rss_anon_after", after.server.rss_anon / kMiB, "MiB");
  report.add("chatd_bytes_per_connection",
             per_connection(after.server.rss, before.server.rss, after.ready), "bytes");
  report.add("chatd_anon_bytes_per_connection",
             per_connection(after.server.rss_anon, before.server.rss_anon, after.ready), "bytes");
  if (samples.size() >= 3) {
    // The last step alone: one-time costs (caches, arenas, the first
    // connections' buffers) are paid before it.
    const Sample& previous = samples[samples.size() - 2];
    report.add("chatd_marginal_bytes_per_connection",
               per_connection(after.server.rss, previous.server.rss, after.ready - previous.ready),
               "bytes");
  }
  if (held_ok) {
    report.add("chatd_held_bytes_per_connection",
               per_connection(held.server.rss, before.server.rss, held.ready), "bytes");
  }
  report.add("loadgen_rss_after", after.own.rss / kMiB, "MiB");
  report.add("loadgen_bytes_per_connection",
             per_connection(after.own.rss, before.own.rss, after.ready), "bytes");
  report.add("kernel_tcp_buffer_bytes_per_connection",
             per_connection(after.tcp_kernel, before.tcp_kernel, after.ready), "bytes");
  report.add("keepalive_pings_received", static_cast<double>(totals.pings), "pings");
  report.add_latency("handshake", totals.handshake);
  report.add_latency("ready", totals.ready_time);
  for (const auto& [reason, count] : totals.end_reasons) {
    std::cerr << "  " << reason << ": " << count << "\n";
  }
  const bool all_good = complete && held_ok && totals.ready == total &&
                        totals.unexpected_ends == 0 && totals.error_frames == 0;
  return all_good ? 0 : 1;
}

}  // namespace chatd::loadgen
