#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "auth/token_verifier.h"

namespace chatd::auth {

/// Who calls on a chat, as the WebSocket handshake and the REST API both decide it.
struct ChatIdentity {
  enum class Refusal {
    none,          ///< `user` is the caller
    unauthorized,  ///< no token, or an invalid or expired one (WebSocket 4401, HTTP 401)
    forbidden,     ///< a valid token whose subject is not a user of the chat (4403, 403)
  };
  Refusal refusal = Refusal::none;
  std::string user;    ///< the caller, when not refused
  std::string reason;  ///< when refused: "unauthorized: expired", "forbidden: …"
  /// With a token: when it stops being valid; a connection is closed then.
  std::chrono::system_clock::time_point expires_at{};
};

/// Identifies the caller of the chat of `user1` and `user2` (SPEC §2).
/// Without a verifier (no SECRET_KEY) the caller is `user1`, the path's first
/// user (compatibility mode). With one, the caller is the subject of `token`
/// (as extract_token found it; nullopt = none), which must be one of the two.
ChatIdentity identify_in_chat(const TokenVerifier* tokens, std::optional<std::string_view> token,
                              std::string_view user1, std::string_view user2);

}  // namespace chatd::auth
