#include "auth/token_verifier.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <climits>
#include <cstdint>
#include <utility>

#include "util/header_list.h"

namespace chatd::auth {
namespace {

constexpr std::string_view kAlgorithm = "HS256";
constexpr std::size_t kSha256Bytes = 32;

bool is_base64url_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

int base64url_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// Strict unpadded base64url (RFC 7515 §2): no '=', no whitespace, and the unused low bits
// of the last character must be zero, so one byte string has exactly one accepted encoding
// (a signature or a payload cannot be re-spelled into a token that reads differently).
std::optional<std::string> base64url_decode(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t buffer = 0;
  int bits = 0;
  for (const char c : in) {
    const int v = base64url_value(c);
    if (v < 0) return std::nullopt;
    buffer = (buffer << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFFu));
    }
  }
  if (bits > 0 && (buffer & ((1u << bits) - 1u)) != 0) return std::nullopt;
  return out;
}

struct Parts {
  std::string_view header;
  std::string_view payload;
  std::string_view signature;
};

// Splits a compact JWS into its three parts; header and payload must be non-empty, the
// signature may be empty (that is what `alg: none` tokens look like: classified later as
// wrong_algorithm rather than malformed, which is the more useful answer).
std::optional<Parts> split(std::string_view token) {
  const auto first = token.find('.');
  if (first == std::string_view::npos) return std::nullopt;
  const auto second = token.find('.', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  if (token.find('.', second + 1) != std::string_view::npos) return std::nullopt;
  Parts parts{token.substr(0, first), token.substr(first + 1, second - first - 1),
              token.substr(second + 1)};
  if (parts.header.empty() || parts.payload.empty()) return std::nullopt;
  return parts;
}

// The header: a JSON object whose `alg` is exactly "HS256", checked before any key is used,
// so that `alg: none` or another algorithm is refused as such and never verified.
enum class HeaderCheck { ok, malformed, wrong_algorithm };
HeaderCheck check_header(const boost::json::object& header) {
  const auto* alg = header.if_contains("alg");
  if (alg == nullptr || !alg->is_string()) return HeaderCheck::malformed;
  // Exact, case-sensitive match (RFC 7518 names are case-sensitive): "hs256" is refused.
  return std::string_view(alg->as_string()) == kAlgorithm ? HeaderCheck::ok
                                                          : HeaderCheck::wrong_algorithm;
}

// `typ`, when it is a string, must name a JWT (RFC 7519 §5.1, compared case-insensitively):
// a token of another type (such as "at+jwt") is not one chatd issues.
bool typ_allowed(const boost::json::object& header) {
  const auto* typ = header.if_contains("typ");
  if (typ == nullptr || !typ->is_string()) return true;
  const std::string_view value = typ->as_string();
  return value.size() == 3 && (value[0] | 0x20) == 'j' && (value[1] | 0x20) == 'w' &&
         (value[2] | 0x20) == 't';
}

// A part of the token that must be a base64url-encoded JSON object.
std::optional<boost::json::object> decode_object(std::string_view encoded) {
  const auto json = base64url_decode(encoded);
  if (!json) return std::nullopt;
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(*json, ec);
  if (ec || !value.is_object()) return std::nullopt;
  return std::move(value.as_object());
}

// HMAC-SHA256 over the signing input, compared in constant time (CRYPTO_memcmp), so timing
// does not leak how many signature bytes matched.
bool signature_matches(const std::string& secret, std::string_view signing_input,
                       std::string_view encoded_signature) {
  const auto signature = base64url_decode(encoded_signature);
  if (!signature || signature->size() != kSha256Bytes) return false;
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(),
           mac.data(), &mac_len) == nullptr ||
      mac_len != kSha256Bytes) {
    return false;
  }
  return CRYPTO_memcmp(mac.data(), signature->data(), kSha256Bytes) == 0;
}

// Reads an integer NumericDate claim. nullopt with present=false when absent; nullopt with
// present=true when present but not an integer that fits in 64 bits (a string, a fraction
// such as 1700003600.5, or a huge number: refused as malformed rather than guessed at).
struct IntClaim {
  bool present = false;
  std::optional<std::int64_t> value;
};
IntClaim int_claim(const boost::json::object& claims, std::string_view name) {
  IntClaim claim;
  const auto* value = claims.if_contains(name);
  claim.present = value != nullptr;
  if (value != nullptr && value->is_int64()) claim.value = value->as_int64();
  return claim;
}

std::int64_t saturating_add(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}

TokenResult fail(TokenError error) {
  return TokenResult{std::nullopt, error};
}

bool ieq_prefix(std::string_view s, std::string_view prefix) noexcept {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    const char a = s[i] >= 'A' && s[i] <= 'Z' ? static_cast<char>(s[i] - 'A' + 'a') : s[i];
    if (a != prefix[i]) return false;  // prefix is given in lower case
  }
  return true;
}

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) noexcept {
  return util::trim_http_whitespace(s);
}

// Three non-empty base64url parts separated by two dots.
bool looks_like_jwt(std::string_view s) noexcept {
  int dots = 0;
  char previous = '.';
  for (const char c : s) {
    if (c == '.') {
      if (previous == '.') return false;  // empty part
      ++dots;
    } else if (!is_base64url_char(c)) {
      return false;
    }
    previous = c;
  }
  return dots == 2 && previous != '.';
}

constexpr std::string_view kBearerProtocolPrefix = "bearer.";

}  // namespace

std::string_view to_string(TokenError error) noexcept {
  switch (error) {
    case TokenError::missing:
      return "missing";
    case TokenError::malformed:
      return "malformed";
    case TokenError::bad_signature:
      return "bad_signature";
    case TokenError::wrong_algorithm:
      return "wrong_algorithm";
    case TokenError::expired:
      return "expired";
    case TokenError::not_yet_valid:
      return "not_yet_valid";
    case TokenError::no_subject:
      return "no_subject";
  }
  return "unknown";
}

TokenVerifier::TokenVerifier(TokenOptions options) : options_(std::move(options)) {
  // A negative leeway would make valid tokens fail; treat it as none.
  if (options_.leeway < std::chrono::seconds::zero())
    options_.leeway = std::chrono::seconds::zero();
}

TokenResult TokenVerifier::verify(std::string_view token,
                                  std::chrono::system_clock::time_point now) const {
  try {
    if (token.empty()) return fail(TokenError::missing);
    if (token.size() > kMaxTokenBytes) return fail(TokenError::malformed);
    const auto parts = split(token);
    if (!parts) return fail(TokenError::malformed);

    const auto header = decode_object(parts->header);
    if (!header) return fail(TokenError::malformed);
    switch (check_header(*header)) {
      case HeaderCheck::ok:
        break;
      case HeaderCheck::malformed:
        return fail(TokenError::malformed);
      case HeaderCheck::wrong_algorithm:
        return fail(TokenError::wrong_algorithm);
    }

    // An empty secret would make tokens signed with an empty key valid; chatd never builds a
    // verifier without SECRET_KEY, and if it did, refusing everything is the safe answer.
    if (options_.secret.empty() || options_.secret.size() > static_cast<std::size_t>(INT_MAX)) {
      return fail(TokenError::bad_signature);
    }
    const std::string_view signing_input =
        token.substr(0, parts->header.size() + 1 + parts->payload.size());
    if (!signature_matches(options_.secret, signing_input, parts->signature)) {
      return fail(TokenError::bad_signature);
    }

    // Only a correctly signed token has its claims read.
    if (!typ_allowed(*header)) return fail(TokenError::malformed);
    const auto claims = decode_object(parts->payload);
    if (!claims) return fail(TokenError::malformed);

    const std::int64_t now_s =
        std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    const std::int64_t leeway = options_.leeway.count();

    // `exp` is required: a token that never expires cannot be revoked by waiting.
    const IntClaim exp = int_claim(*claims, "exp");
    if (!exp.value) return fail(TokenError::malformed);
    if (saturating_add(*exp.value, leeway) < now_s) return fail(TokenError::expired);

    const IntClaim nbf = int_claim(*claims, "nbf");
    if (nbf.present) {
      if (!nbf.value) return fail(TokenError::malformed);
      if (saturating_add(*nbf.value, -leeway) > now_s) return fail(TokenError::not_yet_valid);
    }

    const auto* sub = claims->if_contains("sub");
    if (sub == nullptr || !sub->is_string() || sub->as_string().empty()) {
      return fail(TokenError::no_subject);
    }
    // A NUL inside the subject would be cut short by any C string on its way (a log line,
    // a store driver): refused, like any claim chatd cannot read as it was signed.
    const std::string_view subject = sub->as_string();
    if (subject.find('\0') != std::string_view::npos) return fail(TokenError::malformed);
    // system_clock counts nanoseconds in 64 bits, up to the year 2262: a later
    // `exp` is as good as never, and is held at 2255 so the time point cannot overflow.
    constexpr std::int64_t kLatestExpiry = 9'000'000'000;
    const std::int64_t expires_s = std::min(saturating_add(*exp.value, leeway), kLatestExpiry);
    return TokenResult{std::string(subject), TokenError::missing,
                       std::chrono::system_clock::time_point(std::chrono::seconds(expires_s))};
  } catch (...) {
    // Only allocation failure can get here; the handshake refuses the token (4401).
    return fail(TokenError::malformed);
  }
}

std::optional<std::string> extract_token(std::string_view query_token,
                                         std::string_view authorization_header,
                                         std::string_view websocket_protocol_header) {
  if (!query_token.empty()) return std::string(query_token);

  // RFC 7235: the auth scheme is case-insensitive; RFC 6750: "Bearer" 1*SP token.
  const std::string_view authorization = trim(authorization_header);
  constexpr std::string_view kBearer = "bearer";
  if (authorization.size() > kBearer.size() && ieq_prefix(authorization, kBearer) &&
      is_space(authorization[kBearer.size()])) {
    const std::string_view credentials = trim(authorization.substr(kBearer.size()));
    if (!credentials.empty() && credentials.find_first_of(" \t") == std::string_view::npos) {
      return std::string(credentials);
    }
  }

  // A browser cannot set Authorization on a WebSocket, so the token may ride in the
  // subprotocol list. An explicit `bearer.` entry wins over a bare JWT-shaped entry.
  std::optional<std::string_view> bare;
  for (const std::string_view entry : util::split_header_list(websocket_protocol_header)) {
    if (ieq_prefix(entry, kBearerProtocolPrefix)) {
      const std::string_view value = entry.substr(kBearerProtocolPrefix.size());
      if (!value.empty()) return std::string(value);
    } else if (!bare && looks_like_jwt(entry)) {
      bare = entry;
    }
  }
  if (bare) return std::string(*bare);
  return std::nullopt;
}

bool is_token_subprotocol(std::string_view entry) noexcept {
  entry = trim(entry);
  return ieq_prefix(entry, kBearerProtocolPrefix) || looks_like_jwt(entry);
}

}  // namespace chatd::auth
