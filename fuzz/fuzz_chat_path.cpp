// net::parse_chat_path, which reads the WebSocket request target `/ws/{user1}/{user2}?token=...`
// of every connection, and chat::validate_username, which it applies to both names.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "chat/username.h"
#include "fuzz_check.h"
#include "net/chat_path.h"

namespace chat = chatd::chat;
namespace net = chatd::net;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view target(reinterpret_cast<const char*>(data), size);

  // The raw input as a (decoded) username too: the REST API and the store see names that
  // never went through a path.
  if (!chat::validate_username(target)) {
    FUZZ_CHECK(!target.empty() && target.size() <= chat::kMaxUsernameBytes);
  }

  const auto result = net::parse_chat_path(target);
  if (const auto* path = std::get_if<net::ChatPath>(&result)) {
    // A chat path is always a chat target ("/./ws/..." once slipped through).
    FUZZ_CHECK(net::is_chat_target(target));
    FUZZ_CHECK(!chat::validate_username(path->user1));
    FUZZ_CHECK(!chat::validate_username(path->user2));
  } else {
    FUZZ_CHECK(!std::get<net::ChatPathError>(result).reason.empty());
  }
  return 0;
}
