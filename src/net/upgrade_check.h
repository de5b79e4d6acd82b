#pragma once

// What a WebSocket opening handshake must carry (RFC 6455 §4.2.1), checked before a
// websocket::Session exists, so that a malformed handshake costs no session and gets a JSON
// answer like chatd's other refusals instead of Beast's plain-text one.

#include <optional>
#include <string_view>

#include "net/request_reader.h"

namespace chatd::net {

/// True when `key` is the base64 encoding of exactly 16 bytes (RFC 6455 §4.1: a random
/// 16-byte nonce): 22 base64 characters and `==`, in its one canonical spelling.
[[nodiscard]] bool is_valid_websocket_key(std::string_view key) noexcept;

/// The refusal of an upgrade request (one that beast::websocket::is_upgrade accepts: GET,
/// HTTP/1.1 or later, `Connection: upgrade`, `Upgrade: websocket`), with Connection: close:
///   - not exactly HTTP/1.1, no Host, or `Sec-WebSocket-Key` missing, repeated, or not
///     the base64 of 16 bytes → 400;
///   - `Sec-WebSocket-Version` missing or other than 13 → 426 with
///     `Sec-WebSocket-Version: 13`, the version chatd speaks (§4.4).
/// nullopt when the handshake may go on to the WebSocket session.
[[nodiscard]] std::optional<HttpResponse> validate_upgrade(const HttpRequest& request);

}  // namespace chatd::net
