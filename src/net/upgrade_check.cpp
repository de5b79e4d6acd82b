#include "net/upgrade_check.h"

#include <openssl/evp.h>

#include <array>

#include "net/json_response.h"

namespace chatd::net {
namespace http = boost::beast::http;

namespace {

// A key is 16 bytes: 24 characters, 4 * ceil(16 / 3), the last two of them '='.
constexpr std::size_t kKeyChars = 24;

HttpResponse bad_handshake(const HttpRequest& request, std::string_view code,
                           std::string_view message) {
  return json_response(http::status::bad_request, error_body(code, message), request.version(),
                       false);
}

}  // namespace

bool is_valid_websocket_key(std::string_view key) noexcept {
  // OpenSSL's EVP_DecodeBlock rather than Beast's base64, which lives in
  // boost::beast::detail and is not part of Beast's interface. EVP_DecodeBlock skips
  // surrounding whitespace and reads '=' anywhere as a zero digit, so the shape is checked
  // here first: 22 digits, then exactly "==".
  if (key.size() != kKeyChars || key[kKeyChars - 2] != '=' || key[kKeyChars - 1] != '=') {
    return false;
  }
  const std::string_view digits = key.substr(0, kKeyChars - 2);
  if (digits.find('=') != std::string_view::npos) return false;
  std::array<unsigned char, 3 * kKeyChars / 4> decoded{};
  // 18 bytes for 24 characters: padding is decoded as zero bytes, which are not the key's.
  if (EVP_DecodeBlock(decoded.data(), reinterpret_cast<const unsigned char*>(key.data()),
                      static_cast<int>(key.size())) != static_cast<int>(decoded.size())) {
    return false;
  }
  // The last digit carries 2 bits of the 16th byte and 4 unused bits, which must be zero:
  // one key has one spelling ("AB==" and "AA==" would otherwise be the same 16 bytes).
  const char last = digits.back();
  constexpr std::string_view kCanonicalLast = "AQgw";  // base64 digits 0, 16, 32, 48
  return kCanonicalLast.find(last) != std::string_view::npos;
}

std::optional<HttpResponse> validate_upgrade(const HttpRequest& request) {
  // Beast's accept checks these too, but answers in plain text on a connection it keeps
  // open, and only after a session was made; it lets any key of up to 24 bytes through.
  if (request.version() != 11) {
    return bad_handshake(request, "bad_handshake", "a WebSocket upgrade must be HTTP/1.1");
  }
  if (request.count(http::field::host) == 0) {
    return bad_handshake(request, "bad_handshake", "a WebSocket upgrade must carry Host");
  }
  if (request.count(http::field::sec_websocket_key) != 1 ||
      !is_valid_websocket_key(request[http::field::sec_websocket_key])) {
    return bad_handshake(request, "bad_websocket_key",
                         "Sec-WebSocket-Key must be the base64 encoding of 16 bytes");
  }
  if (request.count(http::field::sec_websocket_version) != 1 ||
      request[http::field::sec_websocket_version] != "13") {
    auto response = json_response(
        http::status::upgrade_required,
        error_body("unsupported_websocket_version", "chatd speaks Sec-WebSocket-Version 13"),
        request.version(), false);
    response.set(http::field::sec_websocket_version, "13");
    return response;
  }
  return std::nullopt;
}

}  // namespace chatd::net
