#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace chatd::loadgen {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

using WebSocket = websocket::stream<beast::tcp_stream>;
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// Where connections go and how they are opened.
struct Target {
  asio::ip::tcp::endpoint server;
  std::string host_header;             ///< "127.0.0.1:5010"
  unsigned source_addresses = 0;       ///< 0: let the kernel pick the source
  std::chrono::nanoseconds timeout{};  ///< connect + handshake; also the close handshake
  /// --peer-port: where the second connection of each chat goes (another chatd
  /// instance, so every message crosses between instances); null = here too.
  std::shared_ptr<const Target> peer;

  /// Resolves a numeric `host`; spreads sources over 127.0.0.1..K only when
  /// the server is on IPv4 loopback (there every 127/8 address is local).
  static Target make(const std::string& host, unsigned port, unsigned source_addresses,
                     double timeout_seconds);
};

/// Opens `ws`: binds to the source address of connection number `index`
/// (round robin, so each source address has its own ~28,000 ephemeral ports),
/// connects and performs the WebSocket handshake for `path`. Sets TCP_NODELAY.
/// With a `subprotocol` ("chat.v2") it is asked for, and a server that does
/// not select it is a failure. On failure returns the error and describes the
/// step in `failure`.
asio::awaitable<beast::error_code> open_websocket(WebSocket& ws, const Target& target,
                                                  std::size_t index, std::string_view path,
                                                  std::string& failure,
                                                  std::string_view subprotocol = {});

/// Starts a close handshake (bounded by the timeout set at open); the
/// connection's read loop ends when chatd answers.
asio::awaitable<void> close_websocket(WebSocket& ws);

/// Closes the socket at once, cancelling every pending operation.
void abort_websocket(WebSocket& ws);

/// "close 1008 receiver too slow" or the error's message, for reports.
std::string describe_end(const WebSocket& ws, const beast::error_code& error);

/// Read errors that mean the connection ended by our own close.
bool is_normal_end(const beast::error_code& error);

}  // namespace chatd::loadgen
