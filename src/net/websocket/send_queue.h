#pragma once

#include <boost/container/devector.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "chat/message.h"
#include "metrics/registry.h"

namespace chatd::net::websocket {

/// The frames waiting to be written to one connection, and what happens at
/// their bound. It owns no socket: the session's writer takes frames from
/// the front (front(), pop()) and is the socket's only writer.
///
/// Every frame a connection is sent passes here and counts against one byte
/// bound (SEND_QUEUE_MAX_BYTES): live messages, events, replies (acks, errors,
/// pongs, history pages) and replayed history. What happens past the bound
/// depends on the frame's kind, and each push says what it did (Status):
///
/// - a live message or a reply that does not fit closes the connection with
///   1008 "receiver too slow": frames not yet started are dropped (the store
///   has every message, so a client that resumes loses nothing);
/// - an event (typing, presence, receipt) that does not fit is dropped: it is
///   a hint, and a later one supersedes it;
/// - the replay never pushes past the bound: it asks for room first
///   (room(), wait_for_room()) and reads the store only when there is some.
///
/// While the replay runs, live messages wait in a replay buffer that counts
/// against the same bound; finish_replay() queues those the replay did not
/// already send, by seq. Afterwards deliver() drops any message whose seq is
/// not past the last one queued, so no message is sent twice.
///
/// Thread-safe: live messages and events arrive from the store's commit
/// thread and the fan-out; everything else from the session's strand. One
/// small mutex, never held across I/O.
class SendQueue {
 public:
  using Clock = std::chrono::steady_clock;

  /// What a push did with its frame.
  enum class Status {
    queued,    ///< The frame will be written.
    skipped,   ///< Not queued, and nothing is wrong: an event before the
               ///< hello, a message already sent, a closing queue.
    dropped,   ///< notify() only: an event past the bound, not queued.
    no_room,   ///< paced() only: not queued, wait_for_room() first.
    too_slow,  ///< Not queued: over the bound. The queue now ends with a 1008
               ///< close; the caller counts it.
  };
  struct Result {
    Status status = Status::skipped;
    /// The writer was idle and has something to write: the caller starts it.
    bool start_writer = false;
  };

  struct Close {
    std::uint16_t code = 0;
    std::string reason;
  };
  /// What the writer takes from the front: a frame, or the close to send.
  struct Item {
    std::shared_ptr<const std::string> frame;  ///< A text frame, or null with
    std::optional<Close> close;                ///< the close to send.
  };

  /// `queued_total` (if any) adds up the bytes queued by every connection.
  explicit SendQueue(std::size_t max_bytes, metrics::Gauge* queued_total = nullptr)
      : max_bytes_(max_bytes), queued_total_(queued_total) {}
  ~SendQueue();

  // --- Any thread ----------------------------------------------------------

  /// A committed message of the chat, for live delivery.
  Result deliver(const chat::MessagePtr& message, const std::shared_ptr<const std::string>& frame);
  /// A best-effort event (v2 typing, presence, receipts).
  Result notify(const std::shared_ptr<const std::string>& frame);

  // --- The session's strand ------------------------------------------------

  /// A reply to the client (ack, error, pong, history page).
  Result reply(std::shared_ptr<const std::string> frame);
  Result reply(std::string frame) {
    return reply(std::make_shared<const std::string>(std::move(frame)));
  }
  /// The replay starts after `seq`: nothing at or before it is sent (the
  /// client has it, or it is older than the history it is shown).
  void replay_from(std::uint64_t seq);
  /// A frame of the replay or a paced answer (a history page): never past
  /// the bound, but `no_room` instead, and the caller waits for room. Alone in
  /// an empty queue a frame is taken whatever its size (the bound is then that
  /// frame). `seq`: the newest message in it, which counts as sent (a live copy
  /// of it is then skipped); 0 for none.
  Result paced(std::shared_ptr<const std::string> frame, std::uint64_t seq);
  /// Ends the replay once it has read the store to its end: the live
  /// messages buffered meanwhile whose seq is past the last one queued
  /// follow, and deliver() queues directly from now on. But when the buffer
  /// had to give way (see wait_for_room), nothing is queued and `caught_up`
  /// is false: the replay reads the store on from last_seq_sent() and calls
  /// this again.
  Result finish_replay(bool& caught_up);
  /// Events are skipped until this (v2: after the hello).
  void open_events();
  /// Queues a close after the frames already queued (once; later calls and
  /// later frames are skipped). `reason` is cut to the 123 bytes a close frame holds.
  Result close(std::uint16_t code, std::string reason);

  /// Closes as too slow (1008), as a live message past the bound does: the
  /// replay's wait for room lasted past its time limit.
  Result close_too_slow();

  /// Bytes that may still be queued before the bound (0 when closing).
  std::size_t room() const;
  /// Asks to be told when at least `bytes` (at most the bound) of room are
  /// free: true when they already are or the queue is closing, else pop()
  /// reports it (Popped::wake). When nothing is being written and the live
  /// messages buffered during the replay hold the room, the buffer gives way
  /// (those messages are in the store, and the replay reads them there).
  bool wait_for_room(std::size_t bytes);

  bool closing() const;
  /// The close code queued (or that the write failure implied), 0 if none.
  std::uint16_t close_code() const;
  /// The highest seq queued for this client.
  std::uint64_t last_seq_sent() const;
  /// This connection's own send `seq` was acknowledged (v2): a receipt may name it.
  void acked(std::uint64_t seq);
  /// The highest seq this client can have seen: sent to it or acked to it.
  std::uint64_t last_seq_seen() const;

  /// Bytes queued (for tests and the memory bound).
  std::size_t queued_bytes() const;

  // --- The writer (the session's strand) -----------------------------------

  /// The item to write next, alone (take() with one frame); nullopt when the
  /// queue is empty, which makes the writer idle (the next push returns start_writer).
  std::optional<Item> front();
  /// What the writer writes at once (take()).
  struct Batch {
    std::vector<std::shared_ptr<const std::string>> frames;
    std::optional<Close> close;  ///< Set alone: the close comes after the frames.
  };
  /// The frames at the front, as many as there are up to `max_frames` and
  /// `max_bytes` (at least one, whatever its size), or the close alone when
  /// it is next; false when the queue is empty, which makes the writer idle.
  bool take(Batch& batch, std::size_t max_frames, std::size_t max_bytes);
  struct Popped {
    Clock::time_point received_at{};  ///< Of the first frame just written.
    bool wake = false;                ///< A wait_for_room() is satisfied.
  };
  /// What front() or take() gave was written (`failed`: the write failed,
  /// and every frame is dropped: nothing more can be written). `received_at`,
  /// if given, gets the read time of each live message among them.
  Popped pop(bool failed, std::vector<Clock::time_point>* received_at = nullptr);

 private:
  struct Entry {
    std::shared_ptr<const std::string> frame;
    std::unique_ptr<Close> close;  // out of line: a queued frame takes 32 bytes
    /// When a live message's frame was read from its sender (for the
    /// delivery-latency metric); unset for every other frame.
    Clock::time_point received_at{};
  };

  bool fits_locked(std::size_t bytes) const { return queued_bytes_ + bytes <= max_bytes_; }
  /// Every change of queued_bytes_ goes through these.
  void add_locked(std::size_t bytes);
  void remove_locked(std::size_t bytes);
  Result push_locked(Entry entry);
  void drop_replay_buffer_locked();
  /// The buffered live messages give way to the replay, which reads them
  /// (and what follows until it has caught up) from the store.
  void give_way_locked();
  /// The writer found nothing to write.
  void idle_locked();
  /// Drops every frame not started and the replay buffer, then queues 1008.
  Result close_too_slow_locked();

  const std::size_t max_bytes_;
  metrics::Gauge* const queued_total_;
  mutable std::mutex mutex_;
  // Allocates nothing while empty (a std::deque holds half a KiB even then);
  // its room is given back once drained after a burst (pop()).
  boost::container::devector<Entry> items_;
  std::vector<std::pair<chat::MessagePtr, std::shared_ptr<const std::string>>> replay_buffer_;
  std::size_t queued_bytes_ = 0;  // items_ and replay_buffer_
  bool writing_ = false;          // the writer runs (until front()/take() find nothing)
  std::size_t taken_ = 0;         // items at the front that the writer is writing
  bool closing_ = false;
  bool replaying_ = true;
  bool replay_buffer_dropped_ = false;  // the replay must read on from the store
  bool events_open_ = false;
  std::uint16_t close_code_ = 0;
  std::uint64_t last_seq_sent_ = 0;
  std::uint64_t last_seq_acked_ = 0;
  std::size_t room_wanted_ = 0;  // wait_for_room's bytes; 0 = nobody waits
};

}  // namespace chatd::net::websocket
