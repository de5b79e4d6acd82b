// net::read_request and net::validate_upgrade: the steps HttpSession takes over the bytes of
// every new connection (Beast's parser with chatd's limits, the checks on the header block,
// the refusal of a request that cannot be read) and the WebSocket handshake's checks.
// Input: one byte, then the bytes a client sends. The byte's low 7 bits + 1 are the most a
// socket read delivers (the parser must not care how the bytes are split); its high bit
// picks chatd's default limits or small ones, so the 431 and 413 paths are reached too.
#include <openssl/evp.h>

#include <array>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "net/request_reader.h"
#include "net/services.h"
#include "net/upgrade_check.h"

namespace net = chatd::net;
namespace http = boost::beast::http;

namespace {

// A refusal is JSON `{"code": ..., "message": ...}` with both non-empty, and ends the
// connection.
void check_refusal(const net::HttpResponse& refusal) {
  FUZZ_CHECK(!refusal.keep_alive());
  boost::system::error_code error;
  const boost::json::value body = boost::json::parse(refusal.body(), error);
  FUZZ_CHECK(!error && body.is_object());
  const auto* code = body.as_object().if_contains("code");
  const auto* message = body.as_object().if_contains("message");
  FUZZ_CHECK(code && code->is_string() && !code->as_string().empty());
  FUZZ_CHECK(message && message->is_string() && !message->as_string().empty());
}

// The key check against OpenSSL's own encoder: a key is valid exactly when it is the
// canonical base64 of the 16 bytes it decodes to.
void check_key(std::string_view key) {
  bool canonical = false;
  if (key.size() == 24) {
    std::array<unsigned char, 18> decoded{};
    std::array<unsigned char, 25> encoded{};
    if (EVP_DecodeBlock(decoded.data(), reinterpret_cast<const unsigned char*>(key.data()), 24) ==
        18) {
      EVP_EncodeBlock(encoded.data(), decoded.data(), 16);
      canonical = std::string_view(reinterpret_cast<const char*>(encoded.data()), 24) == key;
    }
  }
  FUZZ_CHECK(net::is_valid_websocket_key(key) == canonical);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t read_size = (data[0] & 0x7F) + 1u;
  const chatd::net::SessionOptions defaults;
  const net::RequestLimits limits =
      (data[0] & 0x80) != 0
          ? net::RequestLimits{512, 256}
          : net::RequestLimits{defaults.max_header_bytes, defaults.max_body_bytes};
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  check_key(bytes);

  net::RequestRead read = net::read_request(bytes, limits, read_size);
  FUZZ_CHECK(!(read.request && read.refusal));
  FUZZ_CHECK(read.consumed <= bytes.size());
  if (read.refusal) {
    const auto status = read.refusal->result();
    FUZZ_CHECK(status == http::status::bad_request || status == http::status::payload_too_large ||
               status == http::status::request_header_fields_too_large);
    check_refusal(*read.refusal);
    return 0;
  }
  if (!read.request) {
    FUZZ_CHECK(bytes.empty());  // only a client that sent nothing gets no answer
    return 0;
  }
  const net::HttpRequest& request = *read.request;
  FUZZ_CHECK(read.consumed > 0);
  FUZZ_CHECK(request.body().size() <= limits.max_body_bytes);
  FUZZ_CHECK(request.version() == 10 || request.version() == 11);

  // HttpSession asks only about upgrades to /ws/; the check must be safe on any request.
  const auto refusal = net::validate_upgrade(request);
  if (refusal) {
    FUZZ_CHECK(refusal->result() == http::status::bad_request ||
               refusal->result() == http::status::upgrade_required);
    check_refusal(*refusal);
  } else {
    FUZZ_CHECK(request.version() == 11 && request.count(http::field::host) >= 1);
    FUZZ_CHECK(request.count(http::field::sec_websocket_key) == 1);
    FUZZ_CHECK(net::is_valid_websocket_key(request[http::field::sec_websocket_key]));
    FUZZ_CHECK(request[http::field::sec_websocket_version] == "13");
  }
  if (request.count(http::field::sec_websocket_key) == 1) {
    check_key(request[http::field::sec_websocket_key]);
  }
  (void)boost::beast::websocket::is_upgrade(request);
  return 0;
}
