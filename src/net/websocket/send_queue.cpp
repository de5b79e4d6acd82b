#include "net/websocket/send_queue.h"

#include <algorithm>
#include <limits>

namespace chatd::net::websocket {

namespace {

// Queued frames whose room an emptied queue keeps for the next ones (32 B
// each): more is given back, so a quiet connection holds almost none.
constexpr std::size_t kKeptCapacity = 4;
// A close frame's reason is at most 123 bytes (RFC 6455 §5.5).
constexpr std::size_t kMaxCloseReason = 123;
constexpr std::uint16_t kPolicyViolation = 1008;

}  // namespace

SendQueue::~SendQueue() {
  std::lock_guard lock(mutex_);
  remove_locked(queued_bytes_);
}

void SendQueue::add_locked(std::size_t bytes) {
  queued_bytes_ += bytes;
  if (queued_total_ != nullptr) queued_total_->add(static_cast<std::int64_t>(bytes));
}

void SendQueue::remove_locked(std::size_t bytes) {
  queued_bytes_ -= bytes;
  if (queued_total_ != nullptr) queued_total_->add(-static_cast<std::int64_t>(bytes));
}

// ---------------------------------------------------------------------------
// Pushes
// ---------------------------------------------------------------------------

SendQueue::Result SendQueue::deliver(const chat::MessagePtr& message,
                                     const std::shared_ptr<const std::string>& frame) {
  std::lock_guard lock(mutex_);
  if (closing_ || message->seq <= last_seq_sent_) return {};  // closing, or the replay had it
  if (replaying_) {
    if (replay_buffer_dropped_) return {};  // the replay reads it from the store
    if (!fits_locked(frame->size())) {
      // The replay is still sending older messages; this one is in the store,
      // and the replay reads on from there instead of holding it.
      give_way_locked();
      return {};
    }
    add_locked(frame->size());
    replay_buffer_.emplace_back(message, frame);
    return {Status::queued, false};
  }
  // A receiver this slow would make chatd hold its backlog without bound.
  if (!fits_locked(frame->size())) return close_too_slow_locked();
  last_seq_sent_ = message->seq;
  return push_locked(Entry{frame, nullptr, message->received_at});
}

SendQueue::Result SendQueue::notify(const std::shared_ptr<const std::string>& frame) {
  std::lock_guard lock(mutex_);
  // Best effort: none before the hello, none past the bound.
  if (closing_ || !events_open_) return {};
  if (!fits_locked(frame->size())) return {Status::dropped, false};
  return push_locked(Entry{frame, nullptr, {}});
}

SendQueue::Result SendQueue::reply(std::shared_ptr<const std::string> frame) {
  std::lock_guard lock(mutex_);
  if (closing_) return {};
  // A client that keeps asking without reading its answers.
  if (!fits_locked(frame->size())) return close_too_slow_locked();
  return push_locked(Entry{std::move(frame), nullptr, {}});
}

void SendQueue::replay_from(std::uint64_t seq) {
  std::lock_guard lock(mutex_);
  last_seq_sent_ = std::max(last_seq_sent_, seq);
}

SendQueue::Result SendQueue::paced(std::shared_ptr<const std::string> frame, std::uint64_t seq) {
  std::lock_guard lock(mutex_);
  if (closing_ || (seq != 0 && seq <= last_seq_sent_)) return {};
  if (!fits_locked(frame->size()) && queued_bytes_ != 0) return {Status::no_room, false};
  last_seq_sent_ = std::max(last_seq_sent_, seq);
  return push_locked(Entry{std::move(frame), nullptr, {}});
}

SendQueue::Result SendQueue::finish_replay(bool& caught_up) {
  std::lock_guard lock(mutex_);
  caught_up = !replay_buffer_dropped_ || closing_;
  if (!caught_up) {
    // Read on from the store; buffer again what arrives from now on.
    replay_buffer_dropped_ = false;
    return {};
  }
  Result result;
  auto buffered = std::move(replay_buffer_);
  replay_buffer_ = {};
  replaying_ = false;
  for (auto& [message, frame] : buffered) {
    remove_locked(frame->size());
    if (closing_ || message->seq <= last_seq_sent_) continue;
    last_seq_sent_ = message->seq;
    // Already counted against the bound while buffered: no check again.
    const Result pushed = push_locked(Entry{std::move(frame), nullptr, message->received_at});
    result.status = Status::queued;
    result.start_writer |= pushed.start_writer;
  }
  return result;
}

void SendQueue::open_events() {
  std::lock_guard lock(mutex_);
  events_open_ = true;
}

SendQueue::Result SendQueue::close(std::uint16_t code, std::string reason) {
  std::lock_guard lock(mutex_);
  if (closing_) return {};
  if (reason.size() > kMaxCloseReason) reason.resize(kMaxCloseReason);
  return push_locked(Entry{nullptr, std::make_unique<Close>(Close{code, std::move(reason)}), {}});
}

void SendQueue::drop_replay_buffer_locked() {
  for (const auto& buffered : replay_buffer_) remove_locked(buffered.second->size());
  replay_buffer_.clear();
}

void SendQueue::give_way_locked() {
  drop_replay_buffer_locked();
  replay_buffer_dropped_ = true;
}

SendQueue::Result SendQueue::close_too_slow() {
  std::lock_guard lock(mutex_);
  if (closing_) return {};
  return close_too_slow_locked();
}

SendQueue::Result SendQueue::push_locked(Entry entry) {
  if (entry.close) {
    closing_ = true;
    close_code_ = entry.close->code;
  } else {
    add_locked(entry.frame->size());
  }
  items_.push_back(std::move(entry));
  if (writing_) return {Status::queued, false};
  writing_ = true;
  return {Status::queued, true};
}

SendQueue::Result SendQueue::close_too_slow_locked() {
  // Drop what the receiver has not started receiving: the store has every
  // message, so a client that resumes with ?after= loses nothing.
  while (items_.size() > taken_) {
    if (items_.back().frame) remove_locked(items_.back().frame->size());
    items_.pop_back();
  }
  drop_replay_buffer_locked();
  Result result = push_locked(
      Entry{nullptr, std::make_unique<Close>(Close{kPolicyViolation, "receiver too slow"}), {}});
  result.status = Status::too_slow;
  return result;
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

std::size_t SendQueue::room() const {
  std::lock_guard lock(mutex_);
  if (closing_ || queued_bytes_ >= max_bytes_) return 0;
  return max_bytes_ - queued_bytes_;
}

bool SendQueue::wait_for_room(std::size_t bytes) {
  std::lock_guard lock(mutex_);
  bytes = std::clamp<std::size_t>(bytes, 1, max_bytes_);
  if (closing_ || fits_locked(bytes)) return true;
  if (!writing_ && replaying_ && !replay_buffer_.empty()) {
    // Nothing is being written, so only the buffered live messages hold the
    // room, and waiting would never end: they give way to the replay.
    give_way_locked();
    if (fits_locked(bytes)) return true;
  }
  room_wanted_ = bytes;
  return false;
}

bool SendQueue::closing() const {
  std::lock_guard lock(mutex_);
  return closing_;
}

std::uint16_t SendQueue::close_code() const {
  std::lock_guard lock(mutex_);
  return close_code_;
}

std::uint64_t SendQueue::last_seq_sent() const {
  std::lock_guard lock(mutex_);
  return last_seq_sent_;
}

void SendQueue::acked(std::uint64_t seq) {
  std::lock_guard lock(mutex_);
  last_seq_acked_ = std::max(last_seq_acked_, seq);
}

std::uint64_t SendQueue::last_seq_seen() const {
  std::lock_guard lock(mutex_);
  return std::max(last_seq_sent_, last_seq_acked_);
}

std::size_t SendQueue::queued_bytes() const {
  std::lock_guard lock(mutex_);
  return queued_bytes_;
}

// ---------------------------------------------------------------------------
// The writer
// ---------------------------------------------------------------------------

std::optional<SendQueue::Item> SendQueue::front() {
  Batch batch;
  if (!take(batch, 1, std::numeric_limits<std::size_t>::max())) return std::nullopt;
  if (batch.close) return Item{nullptr, std::move(batch.close)};
  return Item{std::move(batch.frames.front()), std::nullopt};
}

bool SendQueue::take(Batch& batch, std::size_t max_frames, std::size_t max_bytes) {
  batch.frames.clear();
  batch.close.reset();
  std::lock_guard lock(mutex_);
  if (items_.empty()) {
    idle_locked();
    return false;
  }
  if (items_.front().close) {
    batch.close = *items_.front().close;
    taken_ = 1;
    return true;
  }
  std::size_t bytes = 0;
  for (const Entry& entry : items_) {
    if (entry.close || batch.frames.size() == max_frames) break;
    if (!batch.frames.empty() && bytes + entry.frame->size() > max_bytes) break;
    bytes += entry.frame->size();
    batch.frames.push_back(entry.frame);
  }
  taken_ = batch.frames.size();
  return true;
}

void SendQueue::idle_locked() {
  writing_ = false;
  taken_ = 0;
  // A burst may have grown the queue; an idle connection holds none of it.
  if (items_.capacity() > kKeptCapacity) decltype(items_)().swap(items_);
}

SendQueue::Popped SendQueue::pop(bool failed, std::vector<Clock::time_point>* received_at) {
  std::lock_guard lock(mutex_);
  Popped popped;
  if (!items_.empty()) popped.received_at = items_.front().received_at;
  for (std::size_t i = 0; i < std::max<std::size_t>(taken_, 1) && !items_.empty(); ++i) {
    const Entry& entry = items_.front();
    if (received_at != nullptr && entry.received_at != Clock::time_point{}) {
      received_at->push_back(entry.received_at);
    }
    if (entry.frame) remove_locked(entry.frame->size());
    items_.pop_front();
  }
  taken_ = 0;
  if (failed) {
    // Nothing more can be written to this connection.
    closing_ = true;
    items_.clear();
    replay_buffer_.clear();
    remove_locked(queued_bytes_);
    writing_ = false;
  }
  if (room_wanted_ != 0 && (closing_ || fits_locked(room_wanted_))) {
    room_wanted_ = 0;
    popped.wake = true;
  }
  return popped;
}

}  // namespace chatd::net::websocket
