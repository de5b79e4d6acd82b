#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace chatd::net {

/// The two users named by a WebSocket request target `/ws/{user1}/{user2}`,
/// percent-decoded, in path order (user1 is the connecting user in v1).
struct ChatPath {
  std::string user1;
  std::string user2;
  std::string token;  ///< The `token` query parameter, if any.
  /// v2 resume: `?after=<seq>`, the last sequence number the client has seen.
  std::optional<std::uint64_t> after_seq;
};

/// Why a target is not a valid chat path (close 4400).
struct ChatPathError {
  std::string reason;
};

/// True when the target's path starts with `/ws/` (it is a chat endpoint at all).
bool is_chat_target(std::string_view target);

/// Parses a request target such as `/ws/alice/bob?token=...`. Rejects extra
/// or missing segments and invalid usernames (chat::validate_username).
std::variant<ChatPath, ChatPathError> parse_chat_path(std::string_view target);

}  // namespace chatd::net
