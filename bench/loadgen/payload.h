#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace chatd::loadgen {

// A load message's text is
//
//   <run id>|<counter, 10 digits>|<send time, 19 digits>|xxxx…
//
// padded with 'x' to the requested size. The send time is steady_clock
// nanoseconds of this process (sender and receiver share the clock); in
// fixed-rate mode it is the *scheduled* send time, so a late send is charged
// to the latency (coordinated omission). Counter 0 is the readiness probe sent
// before the measurement; real messages count from 1. The text never needs
// JSON escaping, so chatd relays it byte for byte and the receiver finds the
// fields without a JSON parser.

/// Length of the text's fixed part for `run_id`; the smallest usable size.
std::size_t header_size(std::string_view run_id);

/// A command the v1 frame is sent inside, for a server that wants one
/// (Centrifugo's publish, centrifugo.h): `head`, a request id, `middle`, the
/// frame, `tail`. The id is `first_id + counter`, rewritten at every stamp in a
/// fixed-width field, right-aligned in blanks (JSON allows them before a value).
struct FrameEnvelope {
  std::string head;
  std::string middle;
  std::string tail;
  std::uint64_t first_id = 1;
};

/// One connection's outgoing v1 frame `{"sender":"<me>","text":"<text>"}`
/// (optionally inside an envelope), built once and re-stamped in place for
/// every message: sending allocates nothing.
class OutgoingFrame {
 public:
  OutgoingFrame(std::string_view sender, std::string_view run_id, std::size_t text_size,
                const FrameEnvelope* envelope = nullptr);

  /// Writes the counter and the send time (and the envelope's id) into the frame.
  void stamp(std::uint64_t counter, std::int64_t sent_ns);
  std::string_view data() const { return frame_; }

 private:
  std::string frame_;
  std::size_t counter_at_ = 0;
  std::size_t time_at_ = 0;
  std::size_t id_at_ = 0;  ///< 0: no envelope
  std::uint64_t first_id_ = 0;
};

/// What a received frame is.
enum class FrameKind {
  message,  ///< a message of this run: `message` is filled in
  foreign,  ///< a message of another run (old history): ignored
  error,    ///< an error frame: `error_code` is filled in
  other,    ///< anything else (unexpected)
};

struct ReceivedMessage {
  std::string_view sender;
  std::uint64_t counter = 0;
  std::int64_t sent_ns = 0;
  std::uint64_t seq = 0;  ///< 0 when the frame has none
};

/// Classifies `frame`. The common case, a message of this run, is read by
/// position without allocating; anything unexpected goes through Boost.JSON.
/// `error_code` is set only for error frames.
FrameKind classify_frame(std::string_view frame, std::string_view run_id, ReceivedMessage& message,
                         std::string& error_code);

/// The fast path of classify_frame alone, also for a frame embedded in a
/// larger one (Centrifugo's publication data): reads `frame` when it starts as
/// chatd writes its frame, `{"sender":"…","text":"<header>`, whatever follows
/// the text's header; `rest` is that remainder (padding, then the rest of the
/// frame). Sets `kind` to message or foreign, not `message.seq`. Returns false
/// for any other shape (then the frame needs a JSON parser).
bool classify_message_fast(std::string_view frame, std::string_view run_id,
                           ReceivedMessage& message, FrameKind& kind, std::string_view& rest);

/// Reads counter and send time from a message text; false when `text` is not
/// one of run `run_id`.
bool parse_text(std::string_view text, std::string_view run_id, ReceivedMessage& message);

}  // namespace chatd::loadgen
