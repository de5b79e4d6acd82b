#pragma once

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <memory>

#include "net/json_response.h"
#include "net/request_reader.h"
#include "net/rest_api.h"
#include "net/services.h"
#include "net/web_assets.h"

namespace chatd::net {

/// Reads one HTTP request at a time from a new connection: WebSocket
/// upgrades on /ws/ go to a websocket::Session, the rest are answered here
/// (health, readiness, metrics, the REST API and the browser page). A request
/// it cannot read, or a malformed upgrade, is refused (request_reader.h,
/// upgrade_check.h) and the connection closed.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket socket, const Services& services);
  void start();

 private:
  using Request = HttpRequest;
  using Response = HttpResponse;
  using Parser = RequestParser;

  void read_request();
  RequestLimits limits() const;
  void on_read(boost::beast::error_code error, Parser& parser);
  void on_request(Request request);
  Response route(const Request& request) const;
  static Response web_response(const WebAsset& asset, unsigned version, bool keep_alive);
  bool origin_allowed(const Request& request) const;
  void write(Response response);
  void write_streamed(Response head, RestApi::NextPiece next);
  void write_piece(RestApi::NextPiece next, bool keep_alive);

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  const Services& services_;
};

}  // namespace chatd::net
