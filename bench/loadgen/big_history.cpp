#include "loadgen/big_history.h"

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/json.hpp>
#include <iostream>
#include <map>
#include <vector>

#include "loadgen/clock.h"
#include "loadgen/histogram.h"
#include "loadgen/io_pool.h"

// Everything runs in one coroutine on one thread, one connection at a time:
// the figures are the latency of a single client, not of a crowd.

namespace chatd::loadgen {
namespace json = boost::json;
namespace {

constexpr std::string_view kSubprotocol = "chat.v2";

/// A frame chatd sent, parsed; `type` empty when it is not a JSON object.
struct Frame {
  json::value value;
  std::string type;
  const json::object* object() const { return value.if_object(); }
};

Frame parse_frame(std::string_view text) {
  Frame frame;
  json::error_code error;
  frame.value = json::parse(text, error);
  const json::object* object = error ? nullptr : frame.value.if_object();
  const json::value* type = object != nullptr ? object->if_contains("type") : nullptr;
  if (type != nullptr && type->is_string()) frame.type = std::string(type->get_string());
  return frame;
}

std::uint64_t number_field(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr) return 0;
  if (value->is_uint64()) return value->get_uint64();
  if (value->is_int64() && value->get_int64() > 0) {
    return static_cast<std::uint64_t>(value->get_int64());
  }
  return 0;
}

/// The seqs of a `history` frame's messages, in frame order.
std::vector<std::uint64_t> history_seqs(const json::object& frame, bool& has_more) {
  std::vector<std::uint64_t> seqs;
  const json::value* more = frame.if_contains("has_more");
  has_more = more != nullptr && more->is_bool() && more->get_bool();
  const json::value* messages = frame.if_contains("messages");
  if (messages == nullptr || !messages->is_array()) return seqs;
  for (const json::value& message : messages->get_array()) {
    seqs.push_back(message.is_object() ? number_field(message.get_object(), "seq") : 0);
  }
  return seqs;
}

/// True when `seqs` is first, first+1, ..., last.
bool consecutive_up_to(const std::vector<std::uint64_t>& seqs, std::uint64_t last) {
  if (seqs.empty() || seqs.back() != last) return false;
  for (std::size_t i = 1; i < seqs.size(); ++i) {
    if (seqs[i] != seqs[i - 1] + 1) return false;
  }
  return true;
}

class BigHistory {
 public:
  BigHistory(asio::io_context& io, const Options& options, const Target& target)
      : io_(io),
        options_(options),
        target_(target),
        first_(options.prefix + "h0a"),
        second_(options.prefix + "h0b") {}

  asio::awaitable<void> run() {
    const bool filled = co_await fill();
    if (!filled) co_return;
    for (unsigned i = 0; i < options_.connects && ok_; ++i) co_await connect_v2(i);
    for (unsigned i = 0; i < options_.connects && ok_; ++i) co_await connect_v1(i);
    for (unsigned i = 0; i < options_.page_runs && ok_; ++i) co_await page_all(i);
  }

  void add_rows(Report& report) const {
    report.add("history_messages", static_cast<double>(last_seq_), "messages");
    report.add("fill_seconds", fill_seconds_, "s");
    report.add("fill_per_s", fill_seconds_ > 0 ? acked_ / fill_seconds_ : 0, "msg/s");
    report.add("fill_errors", static_cast<double>(fill_errors_), "frames");
    report.add("connects_v2", static_cast<double>(connect_v2_.count()), "connects");
    report.add("connect_v2_history_messages", static_cast<double>(v2_page_messages_), "messages");
    report.add_latency("connect_v2_handshake", handshake_v2_);
    report.add_latency("connect_v2_history", connect_v2_);
    report.add("connects_v1", static_cast<double>(connect_v1_.count()), "connects");
    report.add("connect_v1_history_frames", static_cast<double>(v1_frames_), "frames");
    report.add_latency("connect_v1_handshake", handshake_v1_);
    report.add_latency("connect_v1_history", connect_v1_);
    report.add("page_runs", static_cast<double>(page_all_.count()), "runs");
    report.add("pages_per_run", static_cast<double>(pages_per_run_), "pages");
    report.add_latency("page_all", page_all_);
    report.add_latency("page_request", page_request_);
    report.add("history_violations", static_cast<double>(violations_), "histories");
    report.add("failures", static_cast<double>(failures_), "steps");
  }

  void print_problems() const {
    for (const auto& [problem, count] : problems_) {
      std::cerr << "  " << problem << ": " << count << "\n";
    }
  }

  bool ok() const { return ok_ && violations_ == 0 && failures_ == 0 && fill_errors_ == 0; }

 private:
  std::string path(unsigned connect) const {
    return connect % 2 == 0 ? "/ws/" + first_ + "/" + second_ : "/ws/" + second_ + "/" + first_;
  }

  void fail(const std::string& problem) {
    ++failures_;
    ++problems_[problem];
    ok_ = false;
  }

  void violation(const std::string& problem) {
    ++violations_;
    ++problems_[problem];
  }

  /// Closes the socket when a step takes longer than `limit`: no step can hang.
  void guard(asio::steady_timer& timer, WebSocket& ws, std::chrono::nanoseconds limit) {
    timer.expires_after(limit);
    timer.async_wait([&ws](const beast::error_code& error) {
      if (!error) abort_websocket(ws);
    });
  }

  asio::awaitable<bool> open(WebSocket& ws, unsigned connect, bool v2) {
    std::string failure;
    const auto error = co_await open_websocket(ws, target_, connect, path(connect), failure,
                                               v2 ? kSubprotocol : "");
    if (error) fail("connect failed: " + failure);
    co_return !error;
  }

  /// Reads the next frame as JSON; false when the connection ended.
  asio::awaitable<bool> read(WebSocket& ws, beast::flat_buffer& in, Frame& frame,
                             std::int64_t& received_ns) {
    in.consume(in.size());
    const auto [error, bytes] = co_await ws.async_read(in, use_tuple);
    received_ns = now_ns();
    if (error) {
      fail("connection ended: " + describe_end(ws, error));
      co_return false;
    }
    frame = parse_frame(std::string_view(static_cast<const char*>(in.data().data()), bytes));
    if (frame.type == "error") fail("error frame: " + json::serialize(frame.value));
    co_return frame.type != "error";
  }

  /// Close handshake, then read until chatd's answer ends the connection.
  asio::awaitable<void> close(WebSocket& ws, beast::flat_buffer& in) {
    const auto [error] = co_await ws.async_close(websocket::close_code::normal, use_tuple);
    if (error) co_return;
    for (;;) {
      in.consume(in.size());
      const auto [read_error, bytes] = co_await ws.async_read(in, use_tuple);
      if (read_error) break;
    }
  }

  // ---------------------------------------------------------------- fill

  // v2: one connection, each send acknowledged once stored. v1 has no ack:
  // the peer's connection receives every stored message, and that counts.
  asio::awaitable<bool> fill() {
    const bool v1 = options_.fill_protocol == "v1";
    WebSocket ws(io_);
    WebSocket peer(io_);
    asio::steady_timer timer(io_);
    asio::steady_timer peer_timer(io_);
    guard(timer, ws, seconds(options_.setup_timeout));
    asio::steady_timer wake(io_);
    bool live = false;  // the peer answered a ping
    if (v1) {
      // The peer must be in the chat before the first message commits, or it
      // would get only the newest HISTORY_LIMIT of those before it joined: it
      // is when chatd answers its ping (chatd reads only once joined).
      guard(peer_timer, peer, seconds(options_.setup_timeout));
      const bool peer_opened = co_await open(peer, 1, false);
      if (!peer_opened) co_return false;
      peer.control_callback([&live, &wake](websocket::frame_type kind, beast::string_view) {
        if (kind == websocket::frame_type::pong) live = true;
        wake.cancel();
      });
      spawn(io_, read_acks(peer, wake, true));
      const auto [ping_error] = co_await peer.async_ping({}, use_tuple);
      while (!live && !ping_error && !fill_broken_) {
        wake.expires_at(Clock::time_point::max());
        co_await wake.async_wait(use_tuple);
      }
      if (!live) co_return co_await end_fill(ws, peer, wake, false);
    }
    const bool opened = co_await open(ws, 0, !v1);
    if (!opened) co_return co_await end_fill(ws, peer, wake, false);
    if (!v1) {
      // hello, then the (empty) history: the session is live.
      beast::flat_buffer in;
      Frame frame;
      std::int64_t at = 0;
      while (frame.type != "history") {
        const bool got = co_await read(ws, in, frame, at);
        if (!got) co_return co_await end_fill(ws, peer, wake, false);
      }
    }
    std::cerr << "  filling " << options_.big_history << " messages over " << options_.fill_protocol
              << ", at most " << options_.inflight << " unacknowledged\n";
    const std::int64_t start = now_ns();
    spawn(io_, read_acks(ws, wake, false));
    std::string text_pad(std::max<std::size_t>(options_.size, 1), 'x');
    for (std::uint64_t k = 1; k <= options_.big_history && !fill_broken_; ++k) {
      while (sent_ - acked_ - fill_errors_ >= options_.inflight && !fill_broken_) {
        wake.expires_at(Clock::time_point::max());
        co_await wake.async_wait(use_tuple);
      }
      if (fill_broken_) break;
      // `text` is padded to --size bytes after a readable prefix.
      std::string text = options_.prefix + " message " + std::to_string(k) + " ";
      if (text.size() < text_pad.size()) text.append(text_pad, 0, text_pad.size() - text.size());
      const std::string out = v1 ? R"({"sender":")" + first_ + R"(","text":")" + text + R"("})"
                                 : R"({"type":"send","client_id":"f)" + std::to_string(k) +
                                       R"(","text":")" + text + R"("})";
      ++sent_;
      const auto [error, bytes] = co_await ws.async_write(asio::buffer(out), use_tuple);
      if (error) {
        fail("fill write failed: " + error.message());
        break;
      }
    }
    while (acked_ + fill_errors_ < sent_ && !fill_broken_) {
      wake.expires_at(Clock::time_point::max());
      co_await wake.async_wait(use_tuple);
    }
    fill_seconds_ = static_cast<double>(now_ns() - start) / 1e9;
    std::cerr << "  filled: " << acked_ << " stored, " << fill_errors_ << " refused in "
              << fill_seconds_ << " s; last seq " << last_seq_ << "\n";
    co_return co_await end_fill(ws, peer, wake, true);
  }

  /// Closes the fill's connections and waits for their read loops, which
  /// refer to them, to end.
  asio::awaitable<bool> end_fill(WebSocket& ws, WebSocket& peer, asio::steady_timer& wake,
                                 bool filled) {
    fill_closing_ = true;
    for (WebSocket* connection : {&ws, &peer}) {
      if (!beast::get_lowest_layer(*connection).socket().is_open()) continue;
      const auto [close_error] =
          co_await connection->async_close(websocket::close_code::normal, use_tuple);
      if (close_error) abort_websocket(*connection);
    }
    while (fill_readers_ > 0) {
      wake.expires_at(Clock::time_point::max());
      co_await wake.async_wait(use_tuple);
    }
    co_return filled&& ok_&& last_seq_ > 0;
  }

  /// Counts what the fill's connections receive: acks (v2) or the peer's
  /// deliveries (v1, `deliveries`), and error frames.
  asio::awaitable<void> read_acks(WebSocket& ws, asio::steady_timer& wake, bool deliveries) {
    ++fill_readers_;
    beast::flat_buffer in;
    for (;;) {
      const auto [error, bytes] = co_await ws.async_read(in, use_tuple);
      if (error) {
        if (!fill_closing_) {
          fail("fill connection ended: " + describe_end(ws, error));
          fill_broken_ = true;
        }
        break;
      }
      const Frame frame =
          parse_frame(std::string_view(static_cast<const char*>(in.data().data()), bytes));
      in.consume(in.size());
      if (frame.type == (deliveries ? "message" : "ack")) {
        ++acked_;
        last_seq_ = std::max(last_seq_, number_field(*frame.object(), "seq"));
      } else if (frame.type == "error") {
        ++fill_errors_;
        const json::value* code = frame.object()->if_contains("code");
        ++problems_["fill refused: " + (code != nullptr ? json::serialize(*code) : "?")];
      }
      wake.cancel();
    }
    --fill_readers_;
    wake.cancel();
  }

  // ---------------------------------------------------------------- connects

  asio::awaitable<void> connect_v2(unsigned connect) {
    WebSocket ws(io_);
    beast::flat_buffer in;
    asio::steady_timer timer(io_);
    guard(timer, ws, target_.timeout * 2);
    const std::int64_t start = now_ns();
    const bool opened = co_await open(ws, connect, true);
    if (!opened) co_return;
    handshake_v2_.record(now_ns() - start);
    Frame frame;
    std::int64_t at = 0;
    while (frame.type != "history") {
      const bool got = co_await read(ws, in, frame, at);
      if (!got) co_return;
    }
    connect_v2_.record(at - start);
    bool has_more = false;
    const auto seqs = history_seqs(*frame.object(), has_more);
    v2_page_messages_ = seqs.size();
    if (!consecutive_up_to(seqs, last_seq_)) {
      violation("v2 history on connect: not the newest messages in order");
    }
    co_await close(ws, in);
    timer.cancel();
  }

  asio::awaitable<void> connect_v1(unsigned connect) {
    WebSocket ws(io_);
    beast::flat_buffer in;
    asio::steady_timer timer(io_);
    guard(timer, ws, target_.timeout * 2);
    const std::int64_t start = now_ns();
    const bool opened = co_await open(ws, connect, false);
    if (!opened) co_return;
    handshake_v1_.record(now_ns() - start);
    std::vector<std::uint64_t> seqs;
    Frame frame;
    std::int64_t at = 0;
    while (seqs.empty() || seqs.back() < last_seq_) {
      const bool got = co_await read(ws, in, frame, at);
      if (!got) co_return;
      const json::object* object = frame.object();
      seqs.push_back(object != nullptr ? number_field(*object, "seq") : 0);
    }
    connect_v1_.record(at - start);
    v1_frames_ = seqs.size();
    if (!consecutive_up_to(seqs, last_seq_)) {
      violation("v1 history on connect: not the newest messages in order");
    }
    co_await close(ws, in);
    timer.cancel();
  }

  // ---------------------------------------------------------------- paging

  asio::awaitable<void> page_all(unsigned run) {
    WebSocket ws(io_);
    beast::flat_buffer in;
    asio::steady_timer timer(io_);
    guard(timer, ws, seconds(options_.setup_timeout));
    const std::int64_t start = now_ns();
    const bool opened = co_await open(ws, run, true);
    if (!opened) co_return;
    Frame frame;
    std::int64_t at = 0;
    while (frame.type != "history") {
      const bool got = co_await read(ws, in, frame, at);
      if (!got) co_return;
    }
    std::vector<std::uint64_t> all;  // newest page first, each page oldest first
    std::vector<std::vector<std::uint64_t>> pages;
    bool has_more = false;
    pages.push_back(history_seqs(*frame.object(), has_more));
    while (has_more && !pages.back().empty()) {
      const std::string request = R"({"type":"history","before":)" +
                                  std::to_string(pages.back().front()) + R"(,"limit":)" +
                                  std::to_string(options_.page_size) + "}";
      const std::int64_t asked = now_ns();
      const auto [error, bytes] = co_await ws.async_write(asio::buffer(request), use_tuple);
      if (error) {
        fail("history request failed: " + error.message());
        co_return;
      }
      frame = Frame{};
      while (frame.type != "history") {
        const bool got = co_await read(ws, in, frame, at);
        if (!got) co_return;
      }
      page_request_.record(at - asked);
      pages.push_back(history_seqs(*frame.object(), has_more));
    }
    page_all_.record(at - start);
    pages_per_run_ = pages.size();
    for (auto page = pages.rbegin(); page != pages.rend(); ++page) {
      all.insert(all.end(), page->begin(), page->end());
    }
    if (all.size() != last_seq_ || !consecutive_up_to(all, last_seq_) || all.front() != 1) {
      violation("paging: the pages are not every message once, in order");
    }
    co_await close(ws, in);
    timer.cancel();
  }

  asio::io_context& io_;
  const Options& options_;
  const Target& target_;
  const std::string first_;
  const std::string second_;
  bool ok_ = true;

  std::uint64_t sent_ = 0;
  std::uint64_t acked_ = 0;
  std::uint64_t fill_errors_ = 0;
  std::uint64_t last_seq_ = 0;
  bool fill_closing_ = false;
  bool fill_broken_ = false;   ///< a fill connection ended before its close
  unsigned fill_readers_ = 0;  ///< read loops of the fill's connections still running
  double fill_seconds_ = 0;

  LatencyHistogram handshake_v2_;
  LatencyHistogram connect_v2_;
  LatencyHistogram handshake_v1_;
  LatencyHistogram connect_v1_;
  LatencyHistogram page_all_;
  LatencyHistogram page_request_;
  std::size_t v2_page_messages_ = 0;
  std::size_t v1_frames_ = 0;
  std::size_t pages_per_run_ = 0;
  std::uint64_t violations_ = 0;
  std::uint64_t failures_ = 0;
  std::map<std::string, std::uint64_t> problems_;
};

}  // namespace

int run_big_history(const Options& options, const Target& target, Report& report) {
  asio::io_context io(1);
  BigHistory run(io, options, target);
  std::cerr << "run " << options.prefix << ": big history of " << options.big_history
            << " messages at " << target.host_header << "; " << options.connects
            << " connects per protocol, " << options.page_runs << " paging runs (limit "
            << options.page_size << ")\n";
  bool finished = false;
  asio::co_spawn(io, run.run(), [&finished](std::exception_ptr error) {
    if (error) std::rethrow_exception(error);
    finished = true;
  });
  io.run();
  run.add_rows(report);
  run.print_problems();
  return finished && run.ok() ? 0 : 1;
}

}  // namespace chatd::loadgen
