#pragma once

#include <string_view>
#include <vector>

namespace chatd::util {

/// `s` without the spaces and tabs around it (HTTP's optional whitespace).
inline std::string_view trim_http_whitespace(std::string_view s) noexcept {
  const auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

/// The entries of a comma-separated header value such as Sec-WebSocket-Protocol
/// (RFC 9110 §5.6.1), trimmed, empty ones left out. They view into `value`.
inline std::vector<std::string_view> split_header_list(std::string_view value) {
  std::vector<std::string_view> entries;
  while (!value.empty()) {
    const auto comma = value.find(',');
    const std::string_view entry = trim_http_whitespace(value.substr(0, comma));
    if (!entry.empty()) entries.push_back(entry);
    value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
  }
  return entries;
}

}  // namespace chatd::util
