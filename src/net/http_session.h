#pragma once

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <memory>

#include "net/services.h"
#include "net/web_assets.h"

namespace chatd::net {

/// Reads one HTTP request at a time from a new connection: WebSocket
/// upgrades on /ws/ go to a websocket::Session, the rest are answered here
/// (health, readiness, metrics, the REST API and the browser page).
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket socket, const Services& services);
  void start();

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  using Parser = boost::beast::http::request_parser<boost::beast::http::string_body>;

  void read_request();
  void on_read(boost::beast::error_code error, Parser& parser);
  void on_request(Request request);
  Response route(const Request& request) const;
  static Response web_response(const WebAsset& asset, unsigned version, bool keep_alive);
  bool origin_allowed(const Request& request) const;
  void write(Response response);

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  const Services& services_;
};

/// A JSON response with the usual headers.
boost::beast::http::response<boost::beast::http::string_body> json_response(
    boost::beast::http::status status, std::string body, unsigned version, bool keep_alive);

}  // namespace chatd::net
