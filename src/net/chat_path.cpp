#include "net/chat_path.h"

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <charconv>

#include "chat/username.h"

namespace chatd::net {
namespace urls = boost::urls;

bool is_chat_target(std::string_view target) {
  return target.starts_with("/ws/");
}

std::variant<ChatPath, ChatPathError> parse_chat_path(std::string_view target) {
  // Checked on the raw target: Boost.URL's segment view hides a leading
  // "/.", so "/./ws/a/b" would otherwise parse as a chat path.
  if (!is_chat_target(target)) return ChatPathError{"path must be /ws/{user1}/{user2}"};
  const auto parsed = urls::parse_origin_form(target);
  if (!parsed) return ChatPathError{"malformed request target"};
  const urls::url_view& url = *parsed;
  const auto segments = url.encoded_segments();
  if (segments.size() != 3) return ChatPathError{"path must be /ws/{user1}/{user2}"};
  auto it = segments.begin();
  if (*it != "ws") return ChatPathError{"path must be /ws/{user1}/{user2}"};
  ChatPath path;
  path.user1 = (*++it).decode();
  path.user2 = (*++it).decode();
  for (const std::string* user : {&path.user1, &path.user2}) {
    if (auto error = chat::validate_username(*user)) return ChatPathError{*error};
  }
  const auto params = url.params();
  if (const auto token = params.find("token"); token != params.end() && (*token).has_value) {
    path.token = (*token).value;
  }
  if (const auto after = params.find("after"); after != params.end()) {
    const std::string& value = (*after).value;
    std::uint64_t seq = 0;
    const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), seq);
    if (value.empty() || error != std::errc() || end != value.data() + value.size()) {
      return ChatPathError{"\"after\" must be a sequence number"};
    }
    path.after_seq = seq;
  }
  return path;
}

}  // namespace chatd::net
