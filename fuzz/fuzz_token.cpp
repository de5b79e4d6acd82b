// auth::extract_token and auth::TokenVerifier::verify, which read the credentials of every
// WebSocket upgrade while SECRET_KEY is set: the `token` query value, the Authorization
// header and the Sec-WebSocket-Protocol list, all chosen by the client.
// Input: three fields separated by '\n' (query token, Authorization, Sec-WebSocket-Protocol).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "auth/token_verifier.h"
#include "fuzz_check.h"

namespace auth = chatd::auth;

namespace {

std::string_view next_field(std::string_view& rest) {
  const auto newline = rest.find('\n');
  const std::string_view field = rest.substr(0, newline);
  rest = newline == std::string_view::npos ? std::string_view{} : rest.substr(newline + 1);
  return field;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The seed corpus is signed with this key, so valid tokens are reachable.
  static const auth::TokenVerifier verifier(
      auth::TokenOptions{"fuzz-secret", std::chrono::seconds(30)});
  // A fixed "now" (2026-12-01) keeps runs reproducible: the same input, the same outcome.
  static const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1796083200));

  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const std::string_view query = next_field(rest);
  const std::string_view authorization = next_field(rest);
  const std::string_view protocols = rest;

  const auto token = auth::extract_token(query, authorization, protocols);
  if (token) FUZZ_CHECK(!token->empty());
  const auth::TokenResult result = verifier.verify(token.value_or(""), now);
  if (result.ok()) {
    FUZZ_CHECK(!result.subject->empty());
    FUZZ_CHECK(token && token->size() <= auth::kMaxTokenBytes);
  } else {
    FUZZ_CHECK(!auth::to_string(result.error).empty());
  }
  if (!token) FUZZ_CHECK(!result.ok() && result.error == auth::TokenError::missing);
  return 0;
}
