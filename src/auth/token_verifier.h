#pragma once

// JWT verification for chatd (SPEC §2, issue 5 item 1).
//
// Only what the handshake needs: is this token an HS256 JWT signed with SECRET_KEY, still
// valid now, and whose `sub` is it? Mapping the outcome to close codes (4401 for any
// TokenError, 4403 when the subject is not one of the path users) is the caller's job.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace chatd::auth {

/// Longest token accepted, in bytes. Real chatd tokens are a few hundred bytes; the bound
/// keeps a hostile client from making us base64-decode, HMAC and JSON-parse megabytes.
inline constexpr std::size_t kMaxTokenBytes = 8 * 1024;

struct TokenOptions {
  std::string secret;  ///< SECRET_KEY, the HMAC key (raw bytes).
  /// Clock skew tolerated on `exp` and `nbf`: clocks kept by NTP agree far
  /// better than 30 s, and a token lives for minutes at least.
  std::chrono::seconds leeway{30};
};

/// Why a token was refused. Every value means close 4401 at the handshake.
enum class TokenError {
  missing,          ///< No token at all (empty string).
  malformed,        ///< Not a compact JWS, over kMaxTokenBytes, bad base64url/JSON,
                    ///< or a required claim (`exp`) missing or not an integer.
  bad_signature,    ///< HS256 signature does not match the secret.
  wrong_algorithm,  ///< Header `alg` is not exactly "HS256" (includes "none", "HS512").
  expired,          ///< `exp` is more than `leeway` in the past.
  not_yet_valid,    ///< `nbf` is more than `leeway` in the future.
  no_subject,       ///< `sub` absent, not a string, or empty.
};

/// snake_case name of the error, suitable for an error frame `code` or a close reason.
std::string_view to_string(TokenError error) noexcept;

struct TokenResult {
  std::optional<std::string> subject;     ///< Set on success (the verified `sub`).
  TokenError error{TokenError::missing};  ///< Meaningful only when `subject` is empty.
  /// On success: when the token stops being valid (`exp` + leeway). A connection
  /// opened with it is closed then (4401), so a token's lifetime bounds the session's.
  std::chrono::system_clock::time_point expires_at{};

  [[nodiscard]] bool ok() const noexcept { return subject.has_value(); }
};

class TokenVerifier {
 public:
  explicit TokenVerifier(TokenOptions options);

  /// Verifies an HS256 JWT signed with the secret: one pass, Boost.JSON for the JSON and
  /// OpenSSL for the HMAC, no JWT library.
  ///
  /// Order of checks (the first failure wins): empty → missing; over kMaxTokenBytes or not
  /// three parts, or header not strict base64url of a JSON object, or no string `alg` →
  /// malformed; `alg` other than "HS256" → wrong_algorithm (so `alg: none` is refused before
  /// its empty signature is even looked at); signature not strict base64url of the
  /// HMAC-SHA256 of `header.payload` (compared in constant time) → bad_signature; header
  /// `typ` a string other than "JWT" (any case), payload not strict base64url of a JSON
  /// object, or `exp` missing / not a 64-bit integer → malformed; `exp` + leeway < now →
  /// expired; `nbf` present and not a 64-bit integer → malformed; `nbf` - leeway > now →
  /// not_yet_valid; `sub` not a non-empty string → no_subject; `sub` with a NUL in it →
  /// malformed.
  ///
  /// `iat`, `aud` and `iss` are not checked (SPEC §2 does not define them). Never throws.
  /// Thread-safe: the verifier holds only immutable state after construction.
  [[nodiscard]] TokenResult verify(
      std::string_view token,
      std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) const;

 private:
  TokenOptions options_;
};

/// Finds the token a WebSocket/HTTP upgrade request presents, in this order:
///   1. `query_token`: the `token` query parameter value (already percent-decoded by the
///      caller; empty means absent);
///   2. `Authorization: Bearer <t>` (scheme case-insensitive, surrounding spaces ignored;
///      another scheme such as Basic is ignored, not an error);
///   3. `Sec-WebSocket-Protocol` (comma-separated list): an entry `bearer.<t>` anywhere in
///      the list, else the first entry that looks like a compact JWT (three non-empty
///      base64url parts separated by dots).
/// Returns nullopt when none of them carries a token.
///
/// Subprotocol echo: a token entry is never echoed back. chatd selects only a subprotocol
/// it speaks (`chat.v2` when offered) or none at all. Echoing the token would copy a
/// credential into the response and logs, and browsers accept a response that selects no
/// subprotocol, so a browser client can send `["chat.v2", "bearer.<jwt>"]` (gets chat.v2) or
/// `["bearer.<jwt>"]` alone (gets v1, no Sec-WebSocket-Protocol in the response).
std::optional<std::string> extract_token(std::string_view query_token,
                                         std::string_view authorization_header,
                                         std::string_view websocket_protocol_header);

/// True when a Sec-WebSocket-Protocol entry is a token carrier per extract_token
/// (`bearer.` prefix or JWT-shaped). The session does not need it: it selects `chat.v2` or
/// nothing, so it never echoes a token entry whatever the list holds.
bool is_token_subprotocol(std::string_view entry) noexcept;

}  // namespace chatd::auth
