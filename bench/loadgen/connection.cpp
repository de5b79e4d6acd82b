#include "loadgen/connection.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/websocket/error.hpp>
#include <stdexcept>

namespace chatd::loadgen {

Target Target::make(const std::string& host, unsigned port, unsigned source_addresses,
                    double timeout_seconds) {
  Target target;
  boost::system::error_code error;
  const auto address = asio::ip::make_address(host, error);
  if (error) throw std::invalid_argument("--host must be a numeric address, got \"" + host + "\"");
  target.server = {address, static_cast<unsigned short>(port)};
  target.host_header = (address.is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(port);
  const bool v4_loopback = address.is_v4() && (address.to_v4().to_uint() >> 24) == 127;
  target.source_addresses = v4_loopback ? source_addresses : 0;
  target.timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(timeout_seconds));
  return target;
}

asio::awaitable<beast::error_code> open_websocket(WebSocket& ws, const Target& target,
                                                  std::size_t index, std::string_view path,
                                                  std::string& failure,
                                                  std::string_view subprotocol) {
  auto& tcp = beast::get_lowest_layer(ws);
  auto& socket = tcp.socket();
  beast::error_code error;
  socket.open(target.server.protocol(), error);
  if (error) {
    failure = "socket: " + error.message();
    co_return error;
  }
  if (target.source_addresses > 0) {
    // Choose the port at connect(), not bind(): with the 4-tuple known the
    // kernel can reuse a port for different destinations.
    const int yes = 1;
    ::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &yes, sizeof yes);
    const auto source = asio::ip::address_v4(
        (127u << 24) | static_cast<unsigned>(1 + index % target.source_addresses));
    socket.bind({source, 0}, error);
    if (error) {
      failure = "bind " + source.to_string() + ": " + error.message();
      co_return error;
    }
  }
  tcp.expires_after(target.timeout);
  const auto [connect_error] = co_await tcp.async_connect(target.server, use_tuple);
  if (connect_error) {
    error = connect_error;
    failure = "connect: " + error.message();
    co_return error;
  }
  socket.set_option(asio::ip::tcp::no_delay(true), error);
  // From here Beast's own timers run: the handshake (and later the close)
  // within the timeout, no idle limit (chatd pings; Beast answers).
  tcp.expires_never();
  ws.set_option(
      websocket::stream_base::timeout{target.timeout, websocket::stream_base::none(), false});
  ws.auto_fragment(false);
  ws.text(true);
  if (subprotocol.empty()) {
    const auto [handshake_error] = co_await ws.async_handshake(target.host_header, path, use_tuple);
    if (handshake_error) failure = "handshake: " + handshake_error.message();
    co_return handshake_error;
  }
  ws.set_option(websocket::stream_base::decorator(
      [protocol = std::string(subprotocol)](websocket::request_type& request) {
        request.set(beast::http::field::sec_websocket_protocol, protocol);
      }));
  websocket::response_type response;
  const auto [handshake_error] =
      co_await ws.async_handshake(response, target.host_header, path, use_tuple);
  if (handshake_error) {
    failure = "handshake: " + handshake_error.message();
    co_return handshake_error;
  }
  if (response[beast::http::field::sec_websocket_protocol] != subprotocol) {
    failure = "handshake: the server did not select " + std::string(subprotocol);
    abort_websocket(ws);
    co_return beast::error_code(asio::error::operation_not_supported);
  }
  co_return beast::error_code{};
}

asio::awaitable<void> close_websocket(WebSocket& ws) {
  co_await ws.async_close(websocket::close_code::normal, use_tuple);
}

void abort_websocket(WebSocket& ws) {
  beast::get_lowest_layer(ws).close();
}

std::string describe_end(const WebSocket& ws, const beast::error_code& error) {
  if (error == websocket::error::closed) {
    std::string text = "close " + std::to_string(ws.reason().code);
    if (!ws.reason().reason.empty())
      text += " " + std::string(ws.reason().reason.data(), ws.reason().reason.size());
    return text;
  }
  return error.message();
}

bool is_normal_end(const beast::error_code& error) {
  return error == websocket::error::closed || error == asio::error::operation_aborted;
}

}  // namespace chatd::loadgen
