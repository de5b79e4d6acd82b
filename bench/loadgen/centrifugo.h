#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <cstdint>
#include <string>
#include <string_view>

#include "loadgen/connection.h"
#include "loadgen/payload.h"

// Centrifugo (v6) as the server, `--protocol centrifugo`: its JSON client
// protocol (v2) over /connection/websocket, see bench/centrifugo/README.md.
//
// A connection sends `{"id":1,"connect":{"token":"<JWT>"}}` (an HS256 token
// whose `sub` is the user), then `{"id":2,"subscribe":{"channel":"chat:<a>.<b>"}}`,
// one channel per chat, and waits for both replies. A message is
//
//   {"id":<N>,"publish":{"channel":"chat:<a>.<b>","data":<chatd's v1 frame>}}
//
// with the v1 frame stamped as payload.h says, so latency and order are
// measured as with chatd. Centrifugo relays `data` byte for byte to every
// subscriber, the sender included:
//
//   {"push":{"channel":"chat:…","pub":{"data":{…},"info":{…},"offset":<K>,…}}}
//
// and answers the publish with `{"id":<N>,"publish":{}}` (or an error reply).
// One WebSocket frame may hold several such lines, separated by '\n'. Its
// keep-alive ping is the empty reply `{}`, which the client answers with `{}`.

namespace chatd::loadgen::centrifugo {

/// The WebSocket endpoint of Centrifugo's bidirectional JSON protocol.
inline constexpr std::string_view kPath = "/connection/websocket";
/// Centrifugo's ping, and the pong that answers it.
inline constexpr std::string_view kPong = "{}";

/// The channel of the chat of `a` and `b`, either order: `chat:<first>.<second>`
/// with the names sorted (the load generator's names have no '.').
std::string channel_of(std::string_view a, std::string_view b);

/// A connection token for `user`: a JWT `{"sub":"<user>"}` signed HS256 with `secret`.
std::string connection_token(std::string_view user, std::string_view secret);

/// The publish command around a v1 frame, for OutgoingFrame: ids 1 and 2 are
/// the connect and subscribe commands, so message counter c gets id 3 + c.
FrameEnvelope publish_envelope(std::string_view channel);

/// What one line of a Centrifugo frame is.
enum class LineKind {
  publication,      ///< a publication of this run: `message` is filled in (seq = offset)
  foreign,          ///< a publication that is not of this run
  publish_reply,    ///< `{"id":N,"publish":{}}`: a publish succeeded
  connect_reply,    ///< `{"id":N,"connect":{…}}`
  subscribe_reply,  ///< `{"id":N,"subscribe":{…}}`
  error,            ///< `{"id":N,"error":{…}}`: `error_code` is "<code> <message>"
  ping,             ///< `{}`: answer with kPong
  other,            ///< anything else (another push, or not JSON)
};

/// Classifies one line. The common lines (a publication as this program
/// publishes them, a publish reply, a ping) are read by position without
/// allocating; anything else goes through Boost.JSON. `message.sender` points
/// into `line`.
LineKind classify_line(std::string_view line, std::string_view run_id, ReceivedMessage& message,
                       std::string& error_code);

/// Calls `each(line)` for every non-empty line of `frame`.
template <typename Each>
void for_each_line(std::string_view frame, Each&& each) {
  while (!frame.empty()) {
    const std::size_t end = frame.find('\n');
    const std::string_view line = frame.substr(0, end);
    if (!line.empty()) each(line);
    if (end == std::string_view::npos) break;
    frame.remove_prefix(end + 1);
  }
}

/// Connects `user` (token) and subscribes to `channel` on the open WebSocket
/// `ws`, waiting for each reply (answering pings meanwhile), at most
/// `timeout` in all. On failure describes it in `failure` and returns false.
/// `in` is left empty.
asio::awaitable<bool> join(WebSocket& ws, beast::flat_buffer& in, std::string_view token,
                           std::string_view channel, std::chrono::nanoseconds timeout,
                           std::string& failure);

}  // namespace chatd::loadgen::centrifugo
