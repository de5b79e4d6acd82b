// chatd_ceiling's WebSocket layer: the HTTP/1.1 upgrade and RFC 6455 framing,
// written by hand. chatd_ceiling is the floor chatd is measured against (see
// README.md), so it uses no WebSocket library: it parses exactly what the load
// generator sends and pays for nothing but that work.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace chatd::ceiling::ws {

constexpr std::size_t kMaxRequestBytes = 8 * 1024;   ///< an upgrade request longer is refused
constexpr std::size_t kMaxFramePayload = 64 * 1024;  ///< a frame longer is closed with 1009
constexpr std::size_t kMaxUsernameBytes = 64;

enum Opcode : std::uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

enum CloseCode : std::uint16_t {
  kProtocolError = 1002,
  kUnsupported = 1003,
  kInvalidPayload = 1007,
  kTooBig = 1009,
};

// ---------------------------------------------------------------------------
// Upgrade
// ---------------------------------------------------------------------------

struct Upgrade {
  std::string_view user;          ///< the path's {user}
  std::string_view peer;          ///< the path's {peer}
  std::array<char, 28> accept{};  ///< Sec-WebSocket-Accept
};

enum class RequestStatus { incomplete, upgrade, bad };

/// Reads an upgrade request `GET /ws/{user}/{peer} HTTP/1.1` from the start
/// of `data`. On `upgrade`, `consumed` is the request's length (bytes after
/// it are the first frames) and the views in `upgrade` point into `data`.
/// Usernames are 1..64 bytes of [A-Za-z0-9._-], so they never need escaping
/// in JSON nor decoding from the URL.
RequestStatus parse_upgrade(std::string_view data, Upgrade& upgrade, std::size_t& consumed);

/// Appends the 101 response for `upgrade`.
void append_switching_protocols(std::string& out, const Upgrade& upgrade);

constexpr std::string_view kBadRequest =
    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

struct Frame {
  bool fin = false;
  std::uint8_t opcode = 0;
  char* payload = nullptr;  ///< unmasked in place
  std::size_t size = 0;
};

enum class FrameStatus {
  incomplete,      ///< more bytes needed
  frame,           ///< `frame` and `consumed` are set
  too_big,         ///< payload over kMaxFramePayload (known from the header alone)
  protocol_error,  ///< unmasked, reserved bits, bad control frame
};

/// Parses one client frame at the start of `data` and unmasks its payload in place.
FrameStatus parse_frame(char* data, std::size_t size, Frame& frame, std::size_t& consumed);

/// The bytes of a server frame's header (FIN set, unmasked) for a payload of `size`.
constexpr std::size_t header_size(std::size_t size) {
  return size < 126 ? 2 : size <= 0xFFFF ? 4 : 10;
}

/// Writes the header of a server frame to `out` (header_size(size) bytes).
void write_header(char* out, std::uint8_t opcode, std::size_t size);

/// Appends a whole server frame.
void append_frame(std::string& out, std::uint8_t opcode, std::string_view payload);

/// Appends a close frame carrying `code`.
void append_close(std::string& out, std::uint16_t code);

/// True when `data` is well-formed UTF-8 (no overlongs, surrogates or code
/// points past U+10FFFF), as RFC 6455 requires of text frames.
bool is_valid_utf8(const char* data, std::size_t size);

}  // namespace chatd::ceiling::ws
