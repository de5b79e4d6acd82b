#pragma once

// HS256/384/512 tokens made by hand for the auth tests, as an issuer would make them: a
// header, the claims, an HMAC. No JWT library, so a test can craft any claim byte for byte.

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json.hpp>
#include <string>
#include <string_view>

namespace chatd::auth::test_tokens {

/// The HMAC algorithms a test signs with; chatd accepts only HS256.
enum class Alg { hs256, hs384, hs512 };

/// Unpadded base64url (RFC 7515 §2).
inline std::string base64url(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (const unsigned char c : in) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(buffer >> bits) & 0x3F]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(buffer << (6 - bits)) & 0x3F]);
  return out;
}

/// The base64url HMAC of `data` with `key`.
inline std::string hmac_base64url(Alg alg, std::string_view key, std::string_view data) {
  const EVP_MD* md = alg == Alg::hs256   ? EVP_sha256()
                     : alg == Alg::hs384 ? EVP_sha384()
                                         : EVP_sha512();
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  return base64url(std::string_view(reinterpret_cast<const char*>(mac), len));
}

/// `{"alg":…,"typ":"JWT"}` . `payload` . its signature with `key`.
inline std::string signed_token(const boost::json::object& payload, Alg alg, std::string_view key) {
  const char* name = alg == Alg::hs256 ? "HS256" : alg == Alg::hs384 ? "HS384" : "HS512";
  const std::string input =
      base64url(boost::json::serialize(boost::json::object{{"alg", name}, {"typ", "JWT"}})) + "." +
      base64url(boost::json::serialize(payload));
  return input + "." + hmac_base64url(alg, key, input);
}

}  // namespace chatd::auth::test_tokens
