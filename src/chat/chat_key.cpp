#include "chat/chat_key.h"

#include <charconv>

namespace chatd::chat {

ChatKey::ChatKey(std::string first, std::string second)
    : first_(std::move(first)), second_(std::move(second)) {
  key_ = std::to_string(first_.size()) + ":" + first_ + ":" + second_;
}

ChatKey ChatKey::of(std::string_view a, std::string_view b) {
  if (b < a) std::swap(a, b);
  return ChatKey(std::string(a), std::string(b));
}

std::optional<ChatKey> ChatKey::parse(std::string_view key) {
  const auto colon = key.find(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  if (key[0] == '0' && colon > 1) return std::nullopt;  // one spelling per key: no leading zeros
  std::size_t length = 0;
  const auto [end, error] = std::from_chars(key.data(), key.data() + colon, length);
  if (error != std::errc() || end != key.data() + colon) return std::nullopt;
  const std::string_view rest = key.substr(colon + 1);
  if (rest.size() < length + 1 || rest[length] != ':') return std::nullopt;
  const std::string_view first = rest.substr(0, length);
  const std::string_view second = rest.substr(length + 1);
  if (second < first) return std::nullopt;
  return ChatKey(std::string(first), std::string(second));
}

}  // namespace chatd::chat
