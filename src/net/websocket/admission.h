#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <variant>

#include "net/chat_path.h"
#include "net/connection_limits.h"

namespace chatd::auth {
class TokenVerifier;
}

namespace chatd::net::websocket {

/// The protocol version a client speaks (docs/protocol.md).
enum class ProtocolVersion { v1, v2 };

/// v2 when the client offers the `chat.v2` subprotocol, else v1. A token
/// carried as a subprotocol is never selected.
ProtocolVersion negotiate_protocol(std::string_view sec_websocket_protocol);

/// A connection let in: who it is, to which chat, counted by the limits.
struct Admitted {
  ChatPath path;
  /// The connecting user: the token's subject with SECRET_KEY, else user1 of the path.
  std::string user;
  /// With a token: when it expires (the connection is closed then); unset without.
  std::chrono::system_clock::time_point token_expires_at{};
  /// Counts this connection against the limits for as long as it lives.
  std::unique_ptr<ConnectionLimits::Ticket> ticket;
};

/// Why a connection is not let in: the close frame to send.
struct Refused {
  std::uint16_t code = 0;
  std::string reason;
};

/// Decides whether an upgraded request may join its chat: the path (4400),
/// then the token (4401, 4403), then the connection limits (4429), in that
/// order; the first refusal wins. Users are checked against the user-search
/// service afterwards, asynchronously (the session does it). `tokens` is null
/// without SECRET_KEY. No I/O.
std::variant<Admitted, Refused> admit(
    const boost::beast::http::request<boost::beast::http::string_body>& request,
    const boost::asio::ip::address& remote, const auth::TokenVerifier* tokens,
    ConnectionLimits& limits);

}  // namespace chatd::net::websocket
