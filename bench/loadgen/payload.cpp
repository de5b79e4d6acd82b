#include "loadgen/payload.h"

#include <boost/json.hpp>

namespace chatd::loadgen {
namespace json = boost::json;
namespace {

constexpr std::size_t kCounterDigits = 10;
constexpr std::size_t kTimeDigits = 19;
constexpr std::size_t kIdWidth = 10;  ///< an envelope's request id, up to 2^32 - 1
constexpr std::string_view kSenderKey = R"({"sender":")";
constexpr std::string_view kTextKey = R"(","text":")";
constexpr std::string_view kSeqKey = R"("seq":)";

void write_digits(char* out, std::size_t width, std::uint64_t value) {
  for (std::size_t i = width; i-- > 0;) {
    out[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

bool read_digits(std::string_view text, std::size_t at, std::size_t width, std::uint64_t& value) {
  if (at + width > text.size()) return false;
  value = 0;
  for (std::size_t i = at; i < at + width; ++i) {
    const char c = text[i];
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return true;
}

std::uint64_t read_seq(std::string_view rest) {
  const auto at = rest.find(kSeqKey);
  if (at == std::string_view::npos) return 0;
  std::uint64_t seq = 0;
  for (std::size_t i = at + kSeqKey.size(); i < rest.size() && rest[i] >= '0' && rest[i] <= '9';
       ++i) {
    seq = seq * 10 + static_cast<std::uint64_t>(rest[i] - '0');
  }
  return seq;
}

/// The frame as chatd writes it: sender first, then text. Returns false to
/// hand the frame to the JSON parser.
bool classify_fast(std::string_view frame, std::string_view run_id, ReceivedMessage& message,
                   FrameKind& kind) {
  std::string_view rest;
  if (!classify_message_fast(frame, run_id, message, kind, rest)) return false;
  // The padding is all 'x', so the first "seq": after the header is the field.
  if (kind == FrameKind::message) message.seq = read_seq(rest);
  return true;
}

}  // namespace

bool parse_text(std::string_view text, std::string_view run_id, ReceivedMessage& message) {
  if (!text.starts_with(run_id) || text.size() < header_size(run_id)) return false;
  std::size_t at = run_id.size();
  std::uint64_t time = 0;
  if (text[at] != '|' || !read_digits(text, at + 1, kCounterDigits, message.counter)) return false;
  at += 1 + kCounterDigits;
  if (text[at] != '|' || !read_digits(text, at + 1, kTimeDigits, time)) return false;
  at += 1 + kTimeDigits;
  if (text[at] != '|') return false;
  message.sent_ns = static_cast<std::int64_t>(time);
  return true;
}

bool classify_message_fast(std::string_view frame, std::string_view run_id,
                           ReceivedMessage& message, FrameKind& kind, std::string_view& rest) {
  if (!frame.starts_with(kSenderKey)) return false;
  const std::size_t sender_end = frame.find('"', kSenderKey.size());
  if (sender_end == std::string_view::npos) return false;
  const std::string_view sender = frame.substr(kSenderKey.size(), sender_end - kSenderKey.size());
  if (sender.find('\\') != std::string_view::npos) return false;  // escaped: parse properly
  if (frame.substr(sender_end, kTextKey.size()) != kTextKey) return false;
  const std::string_view text = frame.substr(sender_end + kTextKey.size());
  if (!parse_text(text, run_id, message)) {
    kind = FrameKind::foreign;
    return true;
  }
  message.sender = sender;
  rest = text.substr(header_size(run_id));
  kind = FrameKind::message;
  return true;
}

std::size_t header_size(std::string_view run_id) {
  return run_id.size() + 1 + kCounterDigits + 1 + kTimeDigits + 1;
}

OutgoingFrame::OutgoingFrame(std::string_view sender, std::string_view run_id,
                             std::size_t text_size, const FrameEnvelope* envelope) {
  const std::size_t text_length = std::max(text_size, header_size(run_id));
  std::size_t wrapping = 0;
  if (envelope != nullptr) {
    wrapping = envelope->head.size() + kIdWidth + envelope->middle.size() + envelope->tail.size();
  }
  frame_.reserve(wrapping + kSenderKey.size() + sender.size() + kTextKey.size() + text_length + 2);
  if (envelope != nullptr) {
    frame_.append(envelope->head);
    id_at_ = frame_.size();
    first_id_ = envelope->first_id;
    frame_.append(kIdWidth, ' ').append(envelope->middle);
  }
  frame_.append(kSenderKey).append(sender).append(kTextKey);
  const std::size_t text_at = frame_.size();
  frame_.append(run_id).append("|");
  counter_at_ = frame_.size();
  frame_.append(kCounterDigits, '0').append("|");
  time_at_ = frame_.size();
  frame_.append(kTimeDigits, '0').append("|");
  frame_.append(text_length - (frame_.size() - text_at), 'x');
  frame_.append("\"}");
  if (envelope != nullptr) frame_.append(envelope->tail);
}

void OutgoingFrame::stamp(std::uint64_t counter, std::int64_t sent_ns) {
  write_digits(frame_.data() + counter_at_, kCounterDigits, counter);
  write_digits(frame_.data() + time_at_, kTimeDigits, static_cast<std::uint64_t>(sent_ns));
  if (id_at_ != 0) {
    // Right-aligned in blanks: `{"id":        42,...`.
    char* field = frame_.data() + id_at_;
    std::uint64_t id = first_id_ + counter;
    std::size_t i = kIdWidth;
    do {
      field[--i] = static_cast<char>('0' + id % 10);
      id /= 10;
    } while (id != 0 && i > 0);
    while (i > 0) field[--i] = ' ';
  }
}

FrameKind classify_frame(std::string_view frame, std::string_view run_id, ReceivedMessage& message,
                         std::string& error_code) {
  FrameKind kind = FrameKind::other;
  if (classify_fast(frame, run_id, message, kind)) return kind;

  json::error_code error;
  const json::value value = json::parse(frame, error);
  const json::object* object = error ? nullptr : value.if_object();
  if (object == nullptr) return FrameKind::other;
  const json::value* type = object->if_contains("type");
  if (type != nullptr && type->is_string() && type->get_string() == "error") {
    const json::value* code = object->if_contains("code");
    error_code = code != nullptr && code->is_string() ? std::string(code->get_string()) : "?";
    return FrameKind::error;
  }
  const json::value* sender = object->if_contains("sender");
  const json::value* text = object->if_contains("text");
  if (sender == nullptr || !sender->is_string() || text == nullptr || !text->is_string()) {
    return FrameKind::other;
  }
  if (!parse_text(text->get_string(), run_id, message)) return FrameKind::foreign;
  // The sender view must outlive `value`: find it in the frame itself. A name
  // that needed escaping is not one of this run's, so any mismatch will do.
  const std::string_view name = sender->get_string();
  const std::size_t at = frame.find(name);
  message.sender =
      at == std::string_view::npos ? std::string_view("\\") : frame.substr(at, name.size());
  const json::value* seq = object->if_contains("seq");
  message.seq = seq != nullptr && seq->is_uint64()  ? seq->get_uint64()
                : seq != nullptr && seq->is_int64() ? static_cast<std::uint64_t>(seq->get_int64())
                                                    : 0;
  return FrameKind::message;
}

}  // namespace chatd::loadgen
