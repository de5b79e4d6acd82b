#include "net/request_reader.h"

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <string>

#include "net/json_response.h"

namespace chatd::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

void apply_limits(RequestParser& parser, const RequestLimits& limits) {
  parser.header_limit(
      static_cast<std::uint32_t>(std::min<std::size_t>(limits.max_header_bytes, UINT32_MAX)));
  parser.body_limit(limits.max_body_bytes);
}

beast::error_code check_header(const RequestParser& parser, std::size_t header_bytes,
                               const RequestLimits& limits) {
  if (header_bytes > limits.max_header_bytes) return http::error::header_limit;
  const auto& header = parser.get();
  if (header.count(http::field::transfer_encoding) != 0 &&
      (!parser.chunked() || header.version() < 11)) {
    // Beast reads a body as chunked only when chunked is the last coding, and otherwise
    // takes the request as having no body: the bytes that follow would be read as the
    // next request (the way requests are smuggled past a proxy).
    return http::error::bad_transfer_encoding;
  }
  return {};
}

std::optional<HttpResponse> read_refusal(beast::error_code error) {
  // 11: the request's own version may not be known yet; chatd speaks HTTP/1.1.
  if (error == http::error::header_limit) {
    return json_response(
        http::status::request_header_fields_too_large,
        error_body("headers_too_large", "request header block over MAX_HTTP_HEADER_BYTES"), 11,
        false);
  }
  if (error == http::error::body_limit) {
    return json_response(http::status::payload_too_large,
                         error_body("body_too_large", "request body over MAX_HTTP_BODY_BYTES"), 11,
                         false);
  }
  // Every other error of Beast's HTTP category is the parser's: the bytes are not a request
  // (partial_message included: the client ended its side inside one). end_of_stream is
  // not: the client closed before sending a byte of another request. Socket errors and the
  // deadline (other categories) leave no one to answer.
  const auto& parse_errors = http::make_error_code(http::error::end_of_stream).category();
  if (error.category() == parse_errors && error != http::error::end_of_stream) {
    return json_response(http::status::bad_request,
                         error_body("bad_request", "malformed HTTP request: " + error.message()),
                         11, false);
  }
  return std::nullopt;
}

namespace {

// A SyncReadStream over bytes in memory, at most `read_size` of them a read, then EOF:
// what the client sent, as the socket would deliver it.
class MemoryStream {
 public:
  MemoryStream(std::string_view bytes, std::size_t read_size)
      : bytes_(bytes), read_size_(std::max<std::size_t>(read_size, 1)) {}

  template <typename MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, beast::error_code& error) {
    if (position_ == bytes_.size()) {
      error = asio::error::eof;
      return 0;
    }
    error = {};
    const std::size_t size =
        std::min({read_size_, bytes_.size() - position_, asio::buffer_size(buffers)});
    const std::size_t copied =
        asio::buffer_copy(buffers, asio::buffer(bytes_.data() + position_, size));
    position_ += copied;
    return copied;
  }

  template <typename MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers) {
    beast::error_code error;
    const std::size_t n = read_some(buffers, error);
    if (error) throw beast::system_error(error);
    return n;
  }

  std::size_t position() const { return position_; }

 private:
  std::string_view bytes_;
  std::size_t read_size_;
  std::size_t position_ = 0;
};

}  // namespace

RequestRead read_request(std::string_view bytes, const RequestLimits& limits,
                         std::size_t read_size) {
  MemoryStream stream(bytes, read_size);
  beast::flat_buffer buffer;
  RequestParser parser;
  apply_limits(parser, limits);
  RequestRead result;
  beast::error_code error;
  // The same steps as HttpSession::read_request, with the synchronous reads.
  const std::size_t header_bytes = http::read_header(stream, buffer, parser, error);
  if (!error) error = check_header(parser, header_bytes, limits);
  if (!error && !parser.is_done()) http::read(stream, buffer, parser, error);
  result.consumed = stream.position() - buffer.size();
  if (error) {
    result.refusal = read_refusal(error);
    return result;
  }
  result.request = parser.release();
  return result;
}

}  // namespace chatd::net
