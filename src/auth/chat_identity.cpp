#include "auth/chat_identity.h"

namespace chatd::auth {

ChatIdentity identify_in_chat(const TokenVerifier* tokens, std::optional<std::string_view> token,
                              std::string_view user1, std::string_view user2) {
  ChatIdentity identity;
  if (tokens == nullptr) {
    identity.user = user1;
    return identity;
  }
  const TokenResult result = tokens->verify(token.value_or(""));
  if (!result.ok()) {
    identity.refusal = ChatIdentity::Refusal::unauthorized;
    identity.reason = "unauthorized: " + std::string(to_string(result.error));
    return identity;
  }
  if (*result.subject != user1 && *result.subject != user2) {
    identity.refusal = ChatIdentity::Refusal::forbidden;
    identity.reason = "forbidden: token subject is not a user of this chat";
    return identity;
  }
  identity.user = *result.subject;
  identity.expires_at = result.expires_at;
  return identity;
}

}  // namespace chatd::auth
