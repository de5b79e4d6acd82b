#include "users/http_connection.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <stdexcept>
#include <utility>

namespace chatd::users {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

/// The exchange, written once for both stream types.
template <typename Stream>
asio::awaitable<HttpConnection::Response> exchange_on(Stream& stream, beast::flat_buffer& buffer,
                                                      const HttpConnection::Request& request,
                                                      std::size_t body_limit) {
  HttpConnection::Response response;
  auto [write_error, written] = co_await http::async_write(stream, request, kAwait);
  if (write_error) {
    response.error = write_error;
    co_return response;
  }
  http::response_parser<http::string_body> parser;
  parser.body_limit(body_limit);
  auto [read_error, read] = co_await http::async_read(stream, buffer, parser, kAwait);
  response.received_bytes = parser.got_some() || buffer.size() > 0;
  if (read_error) {
    response.error = read_error;
    co_return response;
  }
  response.status = parser.get().result_int();
  response.keep_alive = parser.get().keep_alive();
  response.body = std::move(parser.get().body());
  co_return response;
}

}  // namespace

HttpConnection::HttpConnection(asio::any_io_executor executor)
    : stream_(std::in_place_type<tcp::socket>, std::move(executor)) {}

HttpConnection::HttpConnection(asio::any_io_executor executor, asio::ssl::context& tls)
    : stream_(std::in_place_type<TlsStream>, std::move(executor), tls) {}

tcp::socket& HttpConnection::socket() {
  if (auto* tls = std::get_if<TlsStream>(&stream_)) return tls->next_layer();
  return std::get<tcp::socket>(stream_);
}

asio::awaitable<beast::error_code> HttpConnection::connect(
    const tcp::resolver::results_type& endpoints, const std::string& host, bool host_is_name) {
  auto [connect_error, endpoint] = co_await asio::async_connect(socket(), endpoints, kAwait);
  if (connect_error) co_return connect_error;
  beast::error_code error;
  // One small request per lookup: waiting for Nagle's algorithm would only add latency.
  socket().set_option(tcp::no_delay(true), error);

  auto* tls = std::get_if<TlsStream>(&stream_);
  if (tls == nullptr) co_return beast::error_code{};
  // Without SNI a server hosting several names may present the wrong certificate.
  if (host_is_name && SSL_set_tlsext_host_name(tls->native_handle(), host.c_str()) != 1) {
    co_return beast::error_code(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category());
  }
  tls->set_verify_callback(asio::ssl::host_name_verification(host), error);
  if (error) co_return error;
  auto [handshake_error] = co_await tls->async_handshake(asio::ssl::stream_base::client, kAwait);
  co_return handshake_error;
}

asio::awaitable<HttpConnection::Response> HttpConnection::exchange(const Request& request,
                                                                   std::size_t body_limit) {
  co_return co_await std::visit(
      [&](auto& stream) { return exchange_on(stream, buffer_, request, body_limit); }, stream_);
}

void HttpConnection::close() {
  // No TLS close_notify: the lookup is over either way, and waiting for the peer to
  // acknowledge it is exactly what a timed-out lookup must not do.
  beast::error_code ignored;
  socket().shutdown(tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
}

void configure_client_tls(asio::ssl::context& tls, const std::string& ca_file,
                          std::string_view who) {
  tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                  asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                  asio::ssl::context::no_tlsv1_1);
  tls.set_verify_mode(asio::ssl::verify_peer);
  beast::error_code error;
  tls.set_default_verify_paths(error);
  if (error) spdlog::warn("{}: no system CA certificates: {}", who, error.message());
  if (!ca_file.empty()) {
    tls.load_verify_file(ca_file, error);
    if (error) throw std::invalid_argument("cannot load CA file " + ca_file);
  }
}

std::unique_ptr<HttpConnection> IdleConnections::take() {
  std::lock_guard lock(mutex_);
  if (idle_.empty()) return nullptr;
  auto connection = std::move(idle_.back());
  idle_.pop_back();
  return connection;
}

void IdleConnections::give_back(std::unique_ptr<HttpConnection> connection) {
  std::lock_guard lock(mutex_);
  if (idle_.size() < max_) idle_.push_back(std::move(connection));
}

bool HttpConnection::reusable() {
  return socket().is_open() && buffer_.size() == 0;
}

}  // namespace chatd::users
