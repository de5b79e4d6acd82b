#include "net/request_reader.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

#include "net/upgrade_check.h"

namespace chatd::net {
namespace {

namespace http = boost::beast::http;

constexpr RequestLimits kLimits{1024, 100};

std::string code_of(const HttpResponse& response) {
  return std::string(boost::json::parse(response.body()).at("code").as_string());
}

// Every read size gives the same outcome: Beast's parser, not the split, decides.
void expect_refused(std::string_view bytes, http::status status, std::string_view code) {
  for (const std::size_t read_size : {1, 7, 4096}) {
    const RequestRead read = read_request(bytes, kLimits, read_size);
    EXPECT_FALSE(read.request) << bytes << " (reads of " << read_size << ")";
    ASSERT_TRUE(read.refusal) << bytes << " (reads of " << read_size << ")";
    EXPECT_EQ(read.refusal->result(), status) << bytes;
    EXPECT_FALSE(read.refusal->keep_alive()) << bytes;
    EXPECT_EQ(code_of(*read.refusal), code) << bytes;
  }
}

TEST(RequestReader, ReadsARequestWithAChunkedBodyWhateverTheReadSize) {
  const std::string bytes =
      "GET /healthz HTTP/1.1\r\nHost: chatd\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\nGET /next HTTP/1.1\r\n";
  for (const std::size_t read_size : {1, 3, 4096}) {
    const RequestRead read = read_request(bytes, kLimits, read_size);
    ASSERT_TRUE(read.request) << read_size;
    EXPECT_EQ(read.request->body(), "hello");
    EXPECT_EQ(read.request->target(), "/healthz");
    EXPECT_EQ(bytes.substr(read.consumed), "GET /next HTTP/1.1\r\n");
  }
}

TEST(RequestReader, NothingSentIsNothingToAnswer) {
  const RequestRead read = read_request("", kLimits);
  EXPECT_FALSE(read.request);
  EXPECT_FALSE(read.refusal);
}

TEST(RequestReader, BadContentLengthsAre400) {
  for (const std::string value : {"-5", "+5", "0x10", "5, 6", "99999999999999999999999", ""}) {
    expect_refused("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: " + value + "\r\n\r\nhello!",
                   http::status::bad_request, "bad_request");
  }
  expect_refused("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                 http::status::bad_request, "bad_request");
}

TEST(RequestReader, TransferEncodingWithoutAFinalChunkedIs400) {
  for (const std::string value : {"gzip", "chunked, gzip", ""}) {
    expect_refused("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + value + "\r\n\r\nhello",
                   http::status::bad_request, "bad_request");
  }
  expect_refused("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 http::status::bad_request, "bad_request");
}

TEST(RequestReader, BadChunksAndCutShortRequestsAre400) {
  const std::string chunked = "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  expect_refused(chunked + "1" + std::string(20, '0') + "\r\nx\r\n0\r\n\r\n",
                 http::status::bad_request, "bad_request");
  expect_refused(chunked + "zz\r\n", http::status::bad_request, "bad_request");
  expect_refused(chunked + "5\r\nhel", http::status::bad_request, "bad_request");
  expect_refused("GET / HTTP/1.1\r\nHost: a\r\n", http::status::bad_request, "bad_request");
}

TEST(RequestReader, TheHeaderLimitIsTheWholeBlockAndTheBodyLimitHolds) {
  const std::string head = "GET / HTTP/1.1\r\nX: \r\n\r\n";
  const auto block = [&](std::size_t size) {
    return "GET / HTTP/1.1\r\nX: " + std::string(size - head.size(), 'a') + "\r\n\r\n";
  };
  for (const std::size_t read_size : {1, 4096}) {
    EXPECT_TRUE(read_request(block(kLimits.max_header_bytes), kLimits, read_size).request);
  }
  expect_refused(block(kLimits.max_header_bytes + 1), http::status::request_header_fields_too_large,
                 "headers_too_large");
  expect_refused("GET / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", http::status::payload_too_large,
                 "body_too_large");
}

HttpRequest upgrade(std::string_view key, std::string_view version = "13") {
  HttpRequest request(http::verb::get, "/ws/alice/bob", 11);
  request.set(http::field::host, "chatd");
  request.set(http::field::upgrade, "websocket");
  request.set(http::field::connection, "Upgrade");
  if (!key.empty()) request.set(http::field::sec_websocket_key, key);
  if (!version.empty()) request.set(http::field::sec_websocket_version, version);
  return request;
}

TEST(UpgradeCheck, TheKeyMustBeTheBase64Of16Bytes) {
  EXPECT_TRUE(is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ=="));  // RFC 6455 §1.3
  EXPECT_TRUE(is_valid_websocket_key("AAAAAAAAAAAAAAAAAAAAAA=="));
  EXPECT_TRUE(is_valid_websocket_key("/////////////////////w=="));
  EXPECT_FALSE(is_valid_websocket_key(""));
  EXPECT_FALSE(is_valid_websocket_key("abc"));
  EXPECT_FALSE(is_valid_websocket_key("MDEyMzQ1Njc4OWFiY2Rl"));      // 15 bytes
  EXPECT_FALSE(is_valid_websocket_key("MDEyMzQ1Njc4OWFiY2RlZmc="));  // 17 bytes
  EXPECT_FALSE(is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZQ"));    // no padding
  EXPECT_FALSE(is_valid_websocket_key("dGhlIHNhbXBsZSBub25jZR=="));  // unused bits set
  EXPECT_FALSE(is_valid_websocket_key("-_-_-_-_-_-_-_-_-_-_-w=="));  // base64url
  EXPECT_FALSE(is_valid_websocket_key("dGhlIHNhbXBs ZSBub25jZ=="));  // a space inside
  EXPECT_FALSE(is_valid_websocket_key("dGhlIHNhbXBsZSBub25j===="));  // '=' inside
  EXPECT_FALSE(is_valid_websocket_key(" dGhlIHNhbXBsZSBub25jZQ="));
}

TEST(UpgradeCheck, RefusesBadKeysAndVersionsAndPassesAGoodHandshake) {
  EXPECT_FALSE(validate_upgrade(upgrade("dGhlIHNhbXBsZSBub25jZQ==")));
  for (const auto key : {"", "abc", "MDEyMzQ1Njc4OWFiY2Rl"}) {
    const auto refusal = validate_upgrade(upgrade(key));
    ASSERT_TRUE(refusal) << key;
    EXPECT_EQ(refusal->result(), http::status::bad_request);
    EXPECT_EQ(code_of(*refusal), "bad_websocket_key");
    EXPECT_FALSE(refusal->keep_alive());
  }
  for (const auto version : {"", "8", "13, 8"}) {
    const auto refusal = validate_upgrade(upgrade("dGhlIHNhbXBsZSBub25jZQ==", version));
    ASSERT_TRUE(refusal) << version;
    EXPECT_EQ(refusal->result(), http::status::upgrade_required);
    EXPECT_EQ((*refusal)[http::field::sec_websocket_version], "13");
  }
  auto no_host = upgrade("dGhlIHNhbXBsZSBub25jZQ==");
  no_host.erase(http::field::host);
  ASSERT_TRUE(validate_upgrade(no_host));
  EXPECT_EQ(code_of(*validate_upgrade(no_host)), "bad_handshake");
}

}  // namespace
}  // namespace chatd::net
