#include "loadgen/chat_load.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "loadgen/chat_worker.h"
#include "loadgen/clock.h"
#include "loadgen/io_pool.h"

// The main thread's side of the messaging run: it sequences the phases (see
// chat_worker.h for what runs on the workers) and turns the totals into rows.

namespace chatd::loadgen {
namespace {

template <typename Phase>
void post_to_all(IoPool& pool, std::vector<std::unique_ptr<ChatWorker>>& workers, Phase phase) {
  for (unsigned i = 0; i < workers.size(); ++i) {
    asio::post(pool.context(i), [worker = workers[i].get(), phase] { phase(*worker); });
  }
}

void report_results(const Options& options, const Totals& totals, unsigned opened,
                    unsigned chats_ready, Report& report) {
  const double window = options.duration;
  report.add("connections_opened", opened, "connections");
  report.add("connect_failures", static_cast<double>(totals.connect_failures), "connections");
  report.add("chats_ready", chats_ready, "chats");
  if (options.rate > 0) report.add("offered_rate", options.rate, "msg/s");
  report.add("messages_sent", static_cast<double>(totals.window_sent), "messages");
  report.add("messages_delivered", static_cast<double>(totals.window_delivered), "messages");
  report.add("delivered_per_s", static_cast<double>(totals.window_delivered) / window, "msg/s");
  report.add_latency("latency", totals.latency);
  if (options.rate > 0 && totals.sent > 0) {
    report.add("send_lag_max", static_cast<double>(totals.max_send_lag_ns) / 1e6, "ms");
    report.add("send_lag_mean", totals.total_send_lag_ns / static_cast<double>(totals.sent) / 1e6,
               "ms");
  }
  report.add("sent_total", static_cast<double>(totals.sent), "messages");
  report.add("delivered_total", static_cast<double>(totals.delivered), "messages");
  report.add("lost", static_cast<double>(totals.sent - std::min(totals.sent, totals.delivered)),
             "messages");
  report.add("error_frames", static_cast<double>(totals.error_frames), "frames");
  report.add("unexpected_closes", static_cast<double>(totals.unexpected_ends), "connections");
  report.add("order_violations", static_cast<double>(totals.order_violations), "messages");
  report.add("seq_violations", static_cast<double>(totals.seq_violations), "messages");
  report.add("misrouted", static_cast<double>(totals.misrouted), "messages");
  report.add("foreign_frames", static_cast<double>(totals.foreign_frames), "frames");
  report.add("unexpected_frames", static_cast<double>(totals.unexpected_frames), "frames");
}

void print_details(const Totals& totals) {
  for (const auto& [code, count] : totals.error_codes) {
    std::cerr << "  error frame \"" << code << "\": " << count << "\n";
  }
  for (const auto& [reason, count] : totals.end_reasons) {
    std::cerr << "  connection end \"" << reason << "\": " << count << "\n";
  }
  if (totals.order_violations + totals.seq_violations + totals.misrouted > 0) {
    std::cerr << "  order: " << totals.order_violations << " counter, " << totals.seq_violations
              << " seq, " << totals.misrouted << " from the wrong sender\n";
  }
}

}  // namespace

int run_chat_load(const Options& options, const Target& target, Report& report) {
  const unsigned threads = std::min(options.threads, options.chats);
  const unsigned connections = 2 * options.chats;
  const auto setup_limit = seconds(options.setup_timeout);
  Progress progress;
  IoPool pool(threads);
  std::vector<std::unique_ptr<ChatWorker>> workers;
  const unsigned connectors = std::max(1u, options.concurrency / threads);
  for (unsigned i = 0; i < threads; ++i) {
    workers.push_back(
        std::make_unique<ChatWorker>(pool.context(i), options, target, progress, connectors));
  }
  for (unsigned chat = 0; chat < options.chats; ++chat) workers[chat % threads]->add_chat(chat);
  pool.start();

  std::cerr << "run " << options.prefix << ": opening " << connections << " connections to "
            << target.host_header << "\n";
  auto phase_start = Clock::now();
  post_to_all(pool, workers, [](ChatWorker& worker) { worker.open_all(); });
  wait_for([&] { return progress.opened + progress.failed == connections; }, setup_limit);
  std::cerr << "  " << progress.opened << " open, " << progress.failed << " failed in "
            << std::chrono::duration<double>(Clock::now() - phase_start).count() << " s\n";

  // Every session must be past its (empty) history before the clock starts:
  // each side sends a probe and waits for its peer's.
  phase_start = Clock::now();
  post_to_all(pool, workers, [](ChatWorker& worker) { worker.sync(); });
  wait_for([&] { return progress.chats_ready + progress.chats_broken == options.chats; },
           setup_limit);
  const unsigned ready = progress.chats_ready;
  std::cerr << "  " << ready << " of " << options.chats << " chats live in "
            << std::chrono::duration<double>(Clock::now() - phase_start).count() << " s\n";

  if (ready > 0) {
    const unsigned senders = options.one_way ? options.chats : connections;
    Schedule schedule;
    schedule.start_ns = now_ns() + 20'000'000;  // time for the post to reach every worker
    schedule.window_start_ns = schedule.start_ns + seconds(options.warmup).count();
    schedule.window_end_ns = schedule.window_start_ns + seconds(options.duration).count();
    if (options.rate > 0) {
      schedule.interval_ns = 1e9 * senders / options.rate;
      schedule.stagger_ns = 1e9 / options.rate;
    }
    std::cerr << "  sending: " << options.warmup << " s warm-up, " << options.duration
              << " s measured, ";
    if (options.rate > 0) {
      std::cerr << options.rate << " msg/s in total";
    } else {
      std::cerr << "at most " << options.inflight << " in flight per sender";
    }
    std::cerr << ", " << senders << " senders\n";
    post_to_all(pool, workers, [schedule](ChatWorker& worker) { worker.start(schedule); });
    std::this_thread::sleep_until(time_at(schedule.window_end_ns));
    post_to_all(pool, workers, [](ChatWorker& worker) { worker.drain(); });
    const bool drained =
        wait_for([&] { return progress.workers_drained == threads; }, seconds(options.drain));
    std::cerr << "  " << (drained ? "drained" : "drain timed out") << "\n";
  }

  post_to_all(pool, workers, [](ChatWorker& worker) { worker.close_all(); });
  if (!wait_for([&] { return progress.alive == 0; }, target.timeout + std::chrono::seconds(1))) {
    post_to_all(pool, workers, [](ChatWorker& worker) { worker.abort_all(); });
  }
  pool.finish(std::chrono::seconds(2));

  Totals totals;
  for (const auto& worker : workers) totals.merge(worker->totals());
  report_results(options, totals, progress.opened, ready, report);
  print_details(totals);

  const bool connections_held =
      totals.connect_failures == 0 && totals.unexpected_ends == 0 && ready == options.chats;
  const bool ordered = totals.order_violations + totals.seq_violations + totals.misrouted == 0;
  // Refused messages (error frames) are accounted for; silently missing ones are not.
  const bool nothing_vanished = totals.delivered + totals.error_frames >= totals.sent;
  return connections_held && ordered && nothing_vanished ? 0 : 1;
}

}  // namespace chatd::loadgen
