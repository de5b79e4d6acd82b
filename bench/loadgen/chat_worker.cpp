#include "loadgen/chat_worker.h"

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <tuple>

#include "loadgen/centrifugo.h"
#include "loadgen/clock.h"
#include "loadgen/io_pool.h"

namespace chatd::loadgen {
namespace {

/// chatd: the v1 frame as it is; Centrifugo: inside a publish to the chat's channel.
OutgoingFrame outgoing_frame(const std::string& name, const std::string& channel,
                             const Options& options) {
  if (!options.centrifugo()) return OutgoingFrame(name, options.prefix, options.size);
  const FrameEnvelope envelope = centrifugo::publish_envelope(channel);
  return OutgoingFrame(name, options.prefix, options.size, &envelope);
}

}  // namespace

Side::Side(asio::io_context& io, std::string own_name, const std::string& peer_name,
           const Options& options, std::size_t connection_index)
    : ws(io),
      wake(io),
      name(std::move(own_name)),
      path(options.centrifugo() ? std::string(centrifugo::kPath) : "/ws/" + name + "/" + peer_name),
      channel(options.centrifugo() ? centrifugo::channel_of(name, peer_name) : std::string()),
      index(connection_index),
      out(outgoing_frame(name, channel, options)) {}

void Totals::merge(const Totals& other) {
  sent += other.sent;
  delivered += other.delivered;
  window_sent += other.window_sent;
  window_delivered += other.window_delivered;
  error_frames += other.error_frames;
  foreign_frames += other.foreign_frames;
  unexpected_frames += other.unexpected_frames;
  misrouted += other.misrouted;
  order_violations += other.order_violations;
  seq_violations += other.seq_violations;
  connect_failures += other.connect_failures;
  unexpected_ends += other.unexpected_ends;
  max_send_lag_ns = std::max(max_send_lag_ns, other.max_send_lag_ns);
  total_send_lag_ns += other.total_send_lag_ns;
  latency.merge(other.latency);
  for (const auto& [code, count] : other.error_codes) error_codes[code] += count;
  for (const auto& [reason, count] : other.end_reasons) end_reasons[reason] += count;
}

ChatWorker::ChatWorker(asio::io_context& io, const Options& options, const Target& target,
                       Progress& progress, unsigned connector_count)
    : io_(io),
      options_(options),
      target_(target),
      progress_(progress),
      connector_count_(connector_count),
      centrifugo_(options.centrifugo()) {}

void ChatWorker::add_chat(unsigned number) {
  chats_.push_back(std::make_unique<Chat>(io_, options_, number));
  to_open_.push_back(&chats_.back()->a);
  to_open_.push_back(&chats_.back()->b);
}

void ChatWorker::open_all() {
  for (unsigned i = 0; i < connector_count_; ++i) spawn(io_, connector());
}

void ChatWorker::sync() {
  syncing_ = true;
  for (auto& chat : chats_) {
    if (!chat->a.open || !chat->b.open || chat->a.ended || chat->b.ended) {
      count_broken(*chat);
      continue;
    }
    spawn(io_, run_sender(chat->a, true));
    spawn(io_, run_sender(chat->b, !options_.one_way));
  }
}

void ChatWorker::start(const Schedule& schedule) {
  schedule_ = schedule;
  started_ = true;
  for (auto& chat : chats_) {
    chat->a.wake.cancel();
    chat->b.wake.cancel();
  }
}

void ChatWorker::drain() {
  draining_ = true;
  check_drained();
}

void ChatWorker::close_all() {
  closing_ = true;
  for (auto& chat : chats_) {
    for (Side* side : {&chat->a, &chat->b}) {
      side->wake.cancel();
      if (!side->open || side->ended) continue;
      // A sender still inside a write is stuck behind a full socket: the
      // close frame could not get out either.
      if (side->writing) {
        abort_websocket(side->ws);
      } else {
        spawn(io_, close_websocket(side->ws));
      }
    }
  }
}

void ChatWorker::abort_all() {
  for (auto& chat : chats_) {
    for (Side* side : {&chat->a, &chat->b}) {
      if (side->open && !side->ended) abort_websocket(side->ws);
    }
  }
}

asio::awaitable<void> ChatWorker::connector() {
  while (next_to_open_ < to_open_.size()) {
    Side& side = *to_open_[next_to_open_++];
    std::string failure;
    // The second connection of a chat (odd index) goes to --peer-port when given.
    const Target& where = target_.peer && side.index % 2 == 1 ? *target_.peer : target_;
    const auto error = co_await open_websocket(side.ws, where, side.index, side.path, failure);
    bool joined = !error;
    if (joined && centrifugo_) {
      const std::string token = centrifugo::connection_token(side.name, options_.centrifugo_secret);
      joined =
          co_await centrifugo::join(side.ws, side.in, token, side.channel, where.timeout, failure);
      if (!joined) abort_websocket(side.ws);
    }
    if (!joined) {
      ++totals_.connect_failures;
      ++totals_.end_reasons["connect failed: " + failure];
      progress_.failed.fetch_add(1);
      continue;
    }
    side.open = true;
    progress_.alive.fetch_add(1);
    progress_.opened.fetch_add(1);
    spawn(io_, read_loop(side));
  }
}

// ---------------------------------------------------------------------------
// Receiving
// ---------------------------------------------------------------------------

asio::awaitable<void> ChatWorker::read_loop(Side& side) {
  ReceivedMessage message;
  std::string error_code;
  for (;;) {
    const auto [error, bytes] = co_await side.ws.async_read(side.in, use_tuple);
    if (error) {
      end_unexpectedly(side, describe_end(side.ws, error));
      break;
    }
    const std::string_view frame(static_cast<const char*>(side.in.data().data()), bytes);
    if (centrifugo_) {
      on_centrifugo_frame(side, frame);
      side.in.consume(side.in.size());
      continue;
    }
    switch (classify_frame(frame, options_.prefix, message, error_code)) {
      case FrameKind::message:
        on_message(side, message);
        break;
      case FrameKind::error:
        on_error_frame(side, error_code);
        break;
      case FrameKind::foreign:
        ++totals_.foreign_frames;
        break;
      case FrameKind::other:
        ++totals_.unexpected_frames;
        break;
    }
    side.in.consume(side.in.size());
  }
  side.ended = true;
  side.wake.cancel();
  side.peer->wake.cancel();  // its messages go nowhere now
  progress_.alive.fetch_sub(1);
}

/// Counts a connection that ended before we closed it, once, with the
/// first reason seen (a failed write also fails the pending read).
void ChatWorker::end_unexpectedly(Side& side, const std::string& reason) {
  if (closing_ || side.broken) return;
  side.broken = true;
  ++totals_.unexpected_ends;
  ++totals_.end_reasons[reason];
  if (syncing_) count_broken(*side.chat);  // so the main thread need not wait for it
}

void ChatWorker::count_broken(Chat& chat) {
  if (chat.ready || chat.broken) return;
  chat.broken = true;
  progress_.chats_broken.fetch_add(1);
}

/// Centrifugo: one frame holds one or more lines (replies and pushes).
void ChatWorker::on_centrifugo_frame(Side& side, std::string_view frame) {
  ReceivedMessage message;
  std::string error_code;
  bool pinged = false;
  centrifugo::for_each_line(frame, [&](std::string_view line) {
    switch (centrifugo::classify_line(line, options_.prefix, message, error_code)) {
      case centrifugo::LineKind::publication:
        on_message(side, message);
        break;
      case centrifugo::LineKind::publish_reply:
        break;  // the peer's receipt acknowledges a message, not this
      case centrifugo::LineKind::error:
        on_error_frame(side, error_code);
        break;
      case centrifugo::LineKind::ping:
        pinged = true;
        break;
      case centrifugo::LineKind::foreign:
        ++totals_.foreign_frames;
        break;
      default:
        ++totals_.unexpected_frames;
        break;
    }
  });
  if (pinged) pong(side);
}

void ChatWorker::on_message(Side& side, const ReceivedMessage& message) {
  // Centrifugo pushes a publication to every subscriber of the chat's
  // channel, its sender included: that copy only takes part in the offset check.
  const bool own = centrifugo_ && message.sender == side.name;
  if (!own && message.sender != side.peer->name) {
    ++totals_.misrouted;
    return;
  }
  if (message.seq != 0) {
    if (message.seq <= side.last_seq) ++totals_.seq_violations;
    side.last_seq = std::max(side.last_seq, message.seq);
  }
  if (own) return;
  if (message.counter == 0) {
    on_probe(side);
    return;
  }
  if (message.counter <= side.last_counter) {
    ++totals_.order_violations;
  } else {
    side.last_counter = message.counter;
  }
  ++totals_.delivered;
  acknowledge(*side.peer);
  if (message.sent_ns >= schedule_.window_start_ns && message.sent_ns < schedule_.window_end_ns) {
    ++totals_.window_delivered;
    totals_.latency.record(now_ns() - message.sent_ns);
  }
  if (draining_) check_drained();
}

/// The probe of a chat's peer arrived: that session is past its history
/// and the sender's session stored a message, so both are live.
void ChatWorker::on_probe(Side& side) {
  side.heard_probe = true;
  if (side.peer->heard_probe && !side.chat->ready && !side.chat->broken) {
    side.chat->ready = true;
    progress_.chats_ready.fetch_add(1);
  }
}

/// An error frame answers one of this side's own messages: chatd refused it.
void ChatWorker::on_error_frame(Side& side, const std::string& code) {
  ++totals_.error_frames;
  ++totals_.error_codes[code];
  acknowledge(side);
  if (draining_) check_drained();
}

void ChatWorker::acknowledge(Side& sender) {
  if (sender.inflight > 0) --sender.inflight;
  if (sender.waiting) sender.wake.cancel();
}

void ChatWorker::check_drained() {
  if (drained_ || totals_.delivered + totals_.error_frames < totals_.sent) return;
  drained_ = true;
  progress_.workers_drained.fetch_add(1);
}

// ---------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------

/// Sends the probe, waits for the start, then sends if `sends`.
asio::awaitable<void> ChatWorker::run_sender(Side& side, bool sends) {
  side.out.stamp(0, now_ns());
  // GCC 12.2 miscompiles `if (co_await ...)` in a coroutine with no local
  // variable before it (SIGILL at run time): await into a variable first.
  const bool probe_sent = co_await write(side);
  if (!probe_sent) co_return;
  while (!started_ && !closing_ && !side.ended) {
    side.wake.expires_after(std::chrono::seconds(1));
    co_await side.wake.async_wait(use_tuple);
  }
  if (!sends || closing_ || side.ended || !side.chat->ready) co_return;
  if (options_.rate > 0) {
    co_await send_at_rate(side);
  } else {
    co_await send_windowed(side);
  }
}

/// Fixed rate: message k of this sender is due at first + k * interval, and
/// is stamped with that due time however late it actually leaves, so a
/// stall (in chatd or here) shows in the latency instead of being hidden by
/// sending less (coordinated omission).
asio::awaitable<void> ChatWorker::send_at_rate(Side& side) {
  const double first = static_cast<double>(schedule_.start_ns) +
                       static_cast<double>(sender_number(side)) * schedule_.stagger_ns;
  for (std::uint64_t k = 0;; ++k) {
    const auto due =
        static_cast<std::int64_t>(first + static_cast<double>(k) * schedule_.interval_ns);
    if (due >= schedule_.window_end_ns || side.ended || side.peer->ended || closing_) break;
    std::int64_t now = now_ns();
    if (now < due) {
      side.wake.expires_at(time_at(due));
      co_await side.wake.async_wait(use_tuple);
      if (side.ended || side.peer->ended || closing_) break;
      now = now_ns();
    }
    const std::int64_t lag = std::max<std::int64_t>(0, now - due);
    totals_.max_send_lag_ns = std::max(totals_.max_send_lag_ns, lag);
    totals_.total_send_lag_ns += static_cast<double>(lag);
    const bool sent = co_await send_message(side, due);
    if (!sent) break;
  }
}

/// As fast as possible, with at most --inflight messages of this sender not
/// yet received by the peer. Latency counts from the actual send.
asio::awaitable<void> ChatWorker::send_windowed(Side& side) {
  for (;;) {
    if (side.ended || side.peer->ended || closing_) break;
    const std::int64_t now = now_ns();
    if (now >= schedule_.window_end_ns) break;
    if (side.inflight >= options_.inflight) {
      side.waiting = true;
      side.wake.expires_at(time_at(schedule_.window_end_ns));
      co_await side.wake.async_wait(use_tuple);
      side.waiting = false;
      continue;
    }
    const bool sent = co_await send_message(side, now);
    if (!sent) break;
  }
}

asio::awaitable<bool> ChatWorker::send_message(Side& side, std::int64_t stamp_ns) {
  side.out.stamp(side.next_counter++, stamp_ns);
  ++side.inflight;
  ++totals_.sent;
  if (stamp_ns >= schedule_.window_start_ns) ++totals_.window_sent;
  const bool written = co_await write(side);
  co_return written;
}

asio::awaitable<bool> ChatWorker::write(Side& side) {
  // One write at a time: only a pong (Centrifugo) can be under way here.
  while (side.writing) {
    side.write_waiting = true;
    side.wake.expires_after(std::chrono::seconds(1));
    co_await side.wake.async_wait(use_tuple);
    side.write_waiting = false;
  }
  side.writing = true;
  auto [error, bytes] = co_await side.ws.async_write(asio::buffer(side.out.data()), use_tuple);
  if (!error && side.pong_due) {
    side.pong_due = false;
    std::tie(error, bytes) =
        co_await side.ws.async_write(asio::buffer(centrifugo::kPong), use_tuple);
  }
  side.writing = false;
  if (error) {
    end_unexpectedly(side, "write failed: " + error.message());
    co_return false;
  }
  co_return true;
}

/// Answers Centrifugo's ping: now, or after the write under way.
void ChatWorker::pong(Side& side) {
  if (closing_ || side.ended) return;  // a close handshake may be under way
  if (side.writing) {
    side.pong_due = true;
  } else {
    spawn(io_, write_pong(side));
  }
}

asio::awaitable<void> ChatWorker::write_pong(Side& side) {
  side.writing = true;
  const auto [error, bytes] =
      co_await side.ws.async_write(asio::buffer(centrifugo::kPong), use_tuple);
  side.writing = false;
  if (side.write_waiting) side.wake.cancel();
  if (error) end_unexpectedly(side, "write failed: " + error.message());
}

/// Senders are numbered across all workers so the fixed-rate schedule
/// spreads their sends evenly over each interval.
std::size_t ChatWorker::sender_number(const Side& side) const {
  return options_.one_way ? side.index / 2 : side.index;
}

}  // namespace chatd::loadgen
