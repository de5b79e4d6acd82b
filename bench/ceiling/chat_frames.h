// chatd_ceiling's share of chatd's protocol v1: reading a client's message
// frame and writing the message and error frames chatd writes. Hand-written
// on purpose, without a JSON library: chatd_ceiling is the floor chatd is
// measured against, so it does only the work the protocol requires.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace chatd::ceiling {

/// Finds the "text" member of a JSON object such as `{"sender":"a","text":"hi"}`
/// and returns its raw contents (escapes kept) in `raw_text`. False when
/// `payload` is not a JSON object (validated in full, escapes and surrogate
/// pairs included) or has no string "text". Other members are skipped.
bool find_text(std::string_view payload, std::string_view& raw_text);

/// Decodes the contents of a JSON string that find_text accepted into UTF-8.
void unescape_json(std::string_view raw, std::string& out);

/// Message ids: 4 bytes of seconds, 5 random bytes fixed per process and a
/// 3-byte counter, as 24 lowercase hex digits (a MongoDB ObjectId's layout,
/// as chatd makes them).
class IdMaker {
 public:
  IdMaker();
  void next(std::int64_t now_ms, char* out);  ///< writes 24 characters

 private:
  std::array<char, 10> random_hex_{};
  std::uint32_t counter_ = 0;
  std::int64_t seconds_ = -1;
  std::array<char, 8> seconds_hex_{};
};

/// The pass's time as chatd's `ts`: `2026-12-04T12:00:00.123Z`, UTC.
class Timestamp {
 public:
  void set(std::int64_t now_ms);
  std::int64_t ms() const { return ms_; }
  std::string_view text() const { return {text_.data(), text_.size()}; }

 private:
  std::int64_t ms_ = -1;
  std::int64_t seconds_ = -1;
  std::array<char, 24> text_{};
};

/// Appends a text frame `{"sender":…,"text":…,"type":"message","id":…,"seq":…,"ts":…}`
/// (chatd's v1 field order) and returns the offset in `out` of the text.
std::size_t append_message_frame(std::string& out, std::string_view sender,
                                 std::string_view raw_text, std::string_view id, std::uint64_t seq,
                                 std::string_view ts);

/// Appends a text frame `{"type":"error","code":…,"message":…}`; `code` and
/// `message` must need no escaping.
void append_error_frame(std::string& out, std::string_view code, std::string_view message);

}  // namespace chatd::ceiling
