#include "chat/username.h"

#include "util/utf8.h"

namespace chatd::chat {
namespace {

bool is_control(char32_t c) {
  return c < 0x20 || (c >= 0x7F && c <= 0x9F);
}

}  // namespace

std::optional<std::string> validate_username(std::string_view name) {
  if (name.empty()) return "username is empty";
  if (name.size() > kMaxUsernameBytes) return "username is longer than 64 bytes";
  for (std::size_t i = 0; i < name.size();) {
    char32_t c = 0;
    const std::size_t length = util::decode_utf8(name, i, c);
    if (length == 0) return "username is not valid UTF-8";
    if (is_control(c)) return "username contains a control character";
    i += length;
  }
  return std::nullopt;
}

}  // namespace chatd::chat
