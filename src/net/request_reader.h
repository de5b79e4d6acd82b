#pragma once

// Reading one HTTP/1.1 request, and the answer to one that cannot be read (RFC 9112).
//
// HttpSession reads from its socket with Beast's async_read_header and async_read; the
// steps around them (the parser's limits, the checks once the header block is in, the
// answer to a failed read) are here, apart from any socket, so that read_request() can run
// the same steps over bytes in memory: the unit tests and fuzz/fuzz_http_request use it.

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace chatd::net {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;
using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

/// The bounds of one request (MAX_HTTP_HEADER_BYTES, MAX_HTTP_BODY_BYTES).
struct RequestLimits {
  std::size_t max_header_bytes;  ///< The header block, request line to blank line.
  std::uint64_t max_body_bytes;  ///< The body, after chunked decoding.
};

/// Sets the parser's limits. Beast's header_limit alone is not exact (it leaves out lines
/// parsed from earlier reads): check_header() checks the block's size as read.
void apply_limits(RequestParser& parser, const RequestLimits& limits);

/// What the header block says that the parser does not check, once it has been read
/// (`header_bytes` of it): over the limit → http::error::header_limit; a Transfer-Encoding
/// whose final coding is not chunked (the body's length cannot be known, RFC 9112 §6.3
/// item 4), or any Transfer-Encoding in an HTTP/1.0 request (§6.1) →
/// http::error::bad_transfer_encoding. Beast itself refuses a bad or conflicting
/// Content-Length, a Content-Length beside chunked, and a bad chunk size.
[[nodiscard]] boost::beast::error_code check_header(const RequestParser& parser,
                                                    std::size_t header_bytes,
                                                    const RequestLimits& limits);

/// The answer to a read that failed with `error`, always with Connection: close (the
/// rest of the stream cannot be trusted to start a request): header block over the limit
/// → 431, body over the limit → 413, any other parse error (a bad Content-Length or
/// Transfer-Encoding, a bad chunk, the stream ending inside a request) → 400.
/// nullopt when there is nothing to answer: the client closed between requests, the
/// handshake deadline passed, or the socket failed.
[[nodiscard]] std::optional<HttpResponse> read_refusal(boost::beast::error_code error);

/// One request read from `bytes` the way HttpSession reads one from a socket: the same
/// parser, limits, checks and refusals, with the socket delivering at most `read_size`
/// bytes a read and the end of `bytes` read as the client closing.
struct RequestRead {
  std::optional<HttpRequest> request;   ///< Read in full and within the limits.
  std::optional<HttpResponse> refusal;  ///< Else the answer, when there is one.
  std::size_t consumed = 0;             ///< Bytes of `bytes` that the request took.
};
[[nodiscard]] RequestRead read_request(std::string_view bytes, const RequestLimits& limits,
                                       std::size_t read_size = 4096);

}  // namespace chatd::net
