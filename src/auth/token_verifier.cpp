#include "auth/token_verifier.h"

#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <utility>

#include "util/header_list.h"

namespace chatd::auth {
namespace {

// RAII for libjwt objects, so every early return frees the decoded token.
struct JwtDeleter {
  void operator()(jwt_t* jwt) const noexcept { jwt_free(jwt); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtDeleter>;

// Strings libjwt hands out with malloc (jwt_get_grants_json).
struct FreeDeleter {
  void operator()(char* p) const noexcept { std::free(p); }
};
using MallocString = std::unique_ptr<char, FreeDeleter>;

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
// of the last character must be zero. Being strict means one byte string has exactly one
// accepted encoding, so our signature check and libjwt's (which compares encoded text)
// cannot disagree about the same token.
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

// Reads the header's `alg` ourselves, before any key is used: libjwt 1.10's jwt_decode
// verifies with whatever algorithm the header names (HS512 with our key passes, and `none`
// skips verification), so "is this HS256?" has to be asked independently of it.
enum class HeaderCheck { ok, malformed, wrong_algorithm };
HeaderCheck check_header(std::string_view encoded) {
  const auto json = base64url_decode(encoded);
  if (!json) return HeaderCheck::malformed;
  boost::system::error_code ec;
  const boost::json::value header = boost::json::parse(*json, ec);
  if (ec || !header.is_object()) return HeaderCheck::malformed;
  const auto* alg = header.as_object().if_contains("alg");
  if (alg == nullptr || !alg->is_string()) return HeaderCheck::malformed;
  // Exact, case-sensitive match (RFC 7518 names are case-sensitive): "hs256" is refused.
  return std::string_view(alg->as_string()) == kAlgorithm ? HeaderCheck::ok
                                                          : HeaderCheck::wrong_algorithm;
}

// Our own HMAC-SHA256 check with a constant-time compare (CRYPTO_memcmp), so a wrong key
// reads as bad_signature (libjwt returns the same EINVAL for bad signatures and bad JSON)
// and timing does not leak how many signature bytes matched.
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
// present=true when present but not an integer (a string or a fraction: refused as
// malformed rather than guessed at).
struct IntClaim {
  bool present = false;
  std::optional<long> value;
};
IntClaim int_claim(jwt_t* jwt, const char* name) {
  IntClaim claim;
  // libjwt 1.10's jwt_get_grant_int neither tells "absent" from "present" reliably nor
  // refuses a string or a fraction (it returns a number for them without setting errno;
  // verified by the unit tests), so the claim's JSON type is checked here first.
  const MallocString json(jwt_get_grants_json(jwt, name));
  claim.present = json != nullptr;
  if (!claim.present) return claim;
  boost::system::error_code ec;
  const boost::json::value value = boost::json::parse(json.get(), ec);
  if (ec || !value.is_int64()) return claim;  // string, fraction, huge unsigned: refused
  errno = 0;
  const long read = jwt_get_grant_int(jwt, name);
  if (errno == 0 && read == value.as_int64()) claim.value = read;
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

    switch (check_header(parts->header)) {
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

    // libjwt parses the claims (and verifies again with the key; it must agree with us).
    const std::string terminated(token);  // jwt_decode wants a NUL-terminated string
    jwt_t* raw = nullptr;
    const int rc = jwt_decode(&raw, terminated.c_str(),
                              reinterpret_cast<const unsigned char*>(options_.secret.data()),
                              static_cast<int>(options_.secret.size()));
    const JwtPtr jwt(raw);
    if (rc != 0 || !jwt) return fail(TokenError::malformed);
    // Belt and braces: libjwt's own view of the algorithm must be HS256 too (it would differ
    // only if its JSON reading of the header disagreed with ours, e.g. on duplicate keys).
    if (jwt_get_alg(jwt.get()) != JWT_ALG_HS256) return fail(TokenError::wrong_algorithm);

    const std::int64_t now_s =
        std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    const std::int64_t leeway = options_.leeway.count();

    // `exp` is required: a token that never expires cannot be revoked by waiting.
    const IntClaim exp = int_claim(jwt.get(), "exp");
    if (!exp.value) return fail(TokenError::malformed);
    if (saturating_add(*exp.value, leeway) < now_s) return fail(TokenError::expired);

    const IntClaim nbf = int_claim(jwt.get(), "nbf");
    if (nbf.present) {
      if (!nbf.value) return fail(TokenError::malformed);
      if (saturating_add(*nbf.value, -leeway) > now_s) return fail(TokenError::not_yet_valid);
    }

    // jwt_get_grant returns NULL for an absent claim and for a non-string one (a number).
    const char* sub = jwt_get_grant(jwt.get(), "sub");
    if (sub == nullptr || *sub == '\0') return fail(TokenError::no_subject);
    // system_clock counts nanoseconds in 64 bits, up to the year 2262: a later
    // `exp` is as good as never, and is held at 2255 so the time point cannot overflow.
    constexpr std::int64_t kLatestExpiry = 9'000'000'000;
    const std::int64_t expires_s = std::min(saturating_add(*exp.value, leeway), kLatestExpiry);
    return TokenResult{std::string(sub), TokenError::missing,
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
