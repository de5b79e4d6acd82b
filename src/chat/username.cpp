#include "chat/username.h"

#include <cstdint>

namespace chatd::chat {
namespace {

// Returns the length of the UTF-8 sequence starting at `s[i]` and its code
// point, or 0 when the sequence is malformed (overlong, surrogate, truncated).
std::size_t decode_utf8(std::string_view s, std::size_t i, char32_t& code_point) {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(s[i + k]); };
  const std::uint8_t lead = byte(0);
  std::size_t length = 0;
  char32_t minimum = 0;
  if (lead < 0x80) {
    code_point = lead;
    return 1;
  } else if ((lead & 0xE0) == 0xC0) {
    length = 2, code_point = lead & 0x1F, minimum = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, code_point = lead & 0x0F, minimum = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, code_point = lead & 0x07, minimum = 0x10000;
  } else {
    return 0;
  }
  if (i + length > s.size()) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(k) & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (byte(k) & 0x3F);
  }
  if (code_point < minimum || code_point > 0x10FFFF) return 0;
  if (code_point >= 0xD800 && code_point <= 0xDFFF) return 0;
  return length;
}

bool is_control(char32_t c) {
  return c < 0x20 || (c >= 0x7F && c <= 0x9F);
}

}  // namespace

std::optional<std::string> validate_username(std::string_view name) {
  if (name.empty()) return "username is empty";
  if (name.size() > kMaxUsernameBytes) return "username is longer than 64 bytes";
  for (std::size_t i = 0; i < name.size();) {
    char32_t c = 0;
    const std::size_t length = decode_utf8(name, i, c);
    if (length == 0) return "username is not valid UTF-8";
    if (is_control(c)) return "username contains a control character";
    i += length;
  }
  return std::nullopt;
}

}  // namespace chatd::chat
