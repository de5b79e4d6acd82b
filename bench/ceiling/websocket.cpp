// chatd_ceiling's WebSocket layer: the HTTP/1.1 upgrade and RFC 6455 framing,
// written by hand on purpose: chatd_ceiling is the floor chatd is measured
// against, so it parses exactly what a client sends and pays for nothing else.
#include "ceiling/websocket.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cstring>

#include "util/utf8.h"

namespace chatd::ceiling::ws {
namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
constexpr std::size_t kMaxKeyBytes = 64;

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool contains_ignoring_case(std::string_view text, std::string_view word) {
  for (std::size_t i = 0; i + word.size() <= text.size(); ++i) {
    if (equals_ignoring_case(text.substr(i, word.size()), word)) return true;
  }
  return false;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool is_username(std::string_view name) {
  if (name.empty() || name.size() > kMaxUsernameBytes) return false;
  for (const char c : name) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '_' || c == '.';
    if (!plain) return false;
  }
  return true;
}

/// `/ws/{user}/{peer}`, a query string ignored.
bool parse_target(std::string_view target, Upgrade& upgrade) {
  constexpr std::string_view kPrefix = "/ws/";
  if (!target.starts_with(kPrefix)) return false;
  target.remove_prefix(kPrefix.size());
  if (const auto query = target.find('?'); query != std::string_view::npos) {
    target = target.substr(0, query);
  }
  const auto slash = target.find('/');
  if (slash == std::string_view::npos) return false;
  upgrade.user = target.substr(0, slash);
  upgrade.peer = target.substr(slash + 1);
  return is_username(upgrade.user) && is_username(upgrade.peer) && upgrade.user != upgrade.peer;
}

void compute_accept(std::string_view key, std::array<char, 28>& accept) {
  char joined[kMaxKeyBytes + kGuid.size()];
  std::memcpy(joined, key.data(), key.size());
  std::memcpy(joined + key.size(), kGuid.data(), kGuid.size());
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(joined), key.size() + kGuid.size(), digest);
  unsigned char encoded[29];  // 28 characters and the NUL EVP_EncodeBlock adds
  EVP_EncodeBlock(encoded, digest, SHA_DIGEST_LENGTH);
  std::memcpy(accept.data(), encoded, accept.size());
}

}  // namespace

RequestStatus parse_upgrade(std::string_view data, Upgrade& upgrade, std::size_t& consumed) {
  const auto end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    return data.size() >= kMaxRequestBytes ? RequestStatus::bad : RequestStatus::incomplete;
  }
  if (end + 4 > kMaxRequestBytes) return RequestStatus::bad;
  consumed = end + 4;
  std::string_view head = data.substr(0, end + 2);  // every line ends with \r\n

  const auto line_end = head.find("\r\n");
  const std::string_view request_line = head.substr(0, line_end);
  head.remove_prefix(line_end + 2);
  constexpr std::string_view kMethod = "GET ";
  constexpr std::string_view kVersion = " HTTP/1.1";
  if (!request_line.starts_with(kMethod) || !request_line.ends_with(kVersion)) {
    return RequestStatus::bad;
  }
  const std::string_view target =
      request_line.substr(kMethod.size(), request_line.size() - kMethod.size() - kVersion.size());
  if (!parse_target(target, upgrade)) return RequestStatus::bad;

  std::string_view key;
  bool upgrade_header = false;
  while (!head.empty()) {
    const auto next = head.find("\r\n");
    const std::string_view line = head.substr(0, next);
    head.remove_prefix(next + 2);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return RequestStatus::bad;
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (equals_ignoring_case(name, "sec-websocket-key")) {
      key = value;
    } else if (equals_ignoring_case(name, "upgrade")) {
      upgrade_header = contains_ignoring_case(value, "websocket");
    } else if (equals_ignoring_case(name, "sec-websocket-version")) {
      if (value != "13") return RequestStatus::bad;
    }
  }
  if (!upgrade_header || key.empty() || key.size() > kMaxKeyBytes) return RequestStatus::bad;
  compute_accept(key, upgrade.accept);
  return RequestStatus::upgrade;
}

void append_switching_protocols(std::string& out, const Upgrade& upgrade) {
  out.append(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ");
  out.append(upgrade.accept.data(), upgrade.accept.size());
  out.append("\r\n\r\n");
}

FrameStatus parse_frame(char* data, std::size_t size, Frame& frame, std::size_t& consumed) {
  if (size < 2) return FrameStatus::incomplete;
  const auto b0 = static_cast<std::uint8_t>(data[0]);
  const auto b1 = static_cast<std::uint8_t>(data[1]);
  if ((b0 & 0x70) != 0 || (b1 & 0x80) == 0) return FrameStatus::protocol_error;  // RSV, mask
  frame.fin = (b0 & 0x80) != 0;
  frame.opcode = b0 & 0x0F;
  std::size_t length = b1 & 0x7F;
  std::size_t at = 2;
  if (length == 126) {
    if (size < 4) return FrameStatus::incomplete;
    length =
        (std::size_t{static_cast<std::uint8_t>(data[2])} << 8) | static_cast<std::uint8_t>(data[3]);
    at = 4;
  } else if (length == 127) {
    if (size < 10) return FrameStatus::incomplete;
    std::uint64_t wide = 0;
    for (std::size_t i = 2; i < 10; ++i) wide = (wide << 8) | static_cast<std::uint8_t>(data[i]);
    if (wide > kMaxFramePayload) return FrameStatus::too_big;
    length = static_cast<std::size_t>(wide);
    at = 10;
  }
  if (length > kMaxFramePayload) return FrameStatus::too_big;
  if ((frame.opcode & 0x08) != 0 && (length > 125 || !frame.fin)) {
    return FrameStatus::protocol_error;  // a control frame: short and never fragmented
  }
  if (size < at + 4 + length) return FrameStatus::incomplete;

  const char* key = data + at;
  char* payload = data + at + 4;
  // Eight bytes at a time: byte i is XORed with key[i % 4] either way.
  std::uint32_t key32 = 0;
  std::memcpy(&key32, key, 4);
  const std::uint64_t key64 = (std::uint64_t{key32} << 32) | key32;
  std::size_t i = 0;
  for (; i + 8 <= length; i += 8) {
    std::uint64_t word = 0;
    std::memcpy(&word, payload + i, 8);
    word ^= key64;
    std::memcpy(payload + i, &word, 8);
  }
  for (; i < length; ++i) payload[i] = static_cast<char>(payload[i] ^ key[i & 3]);

  frame.payload = payload;
  frame.size = length;
  consumed = at + 4 + length;
  return FrameStatus::frame;
}

void write_header(char* out, std::uint8_t opcode, std::size_t size) {
  out[0] = static_cast<char>(0x80 | opcode);
  if (size < 126) {
    out[1] = static_cast<char>(size);
  } else if (size <= 0xFFFF) {
    out[1] = 126;
    out[2] = static_cast<char>(size >> 8);
    out[3] = static_cast<char>(size & 0xFF);
  } else {
    out[1] = 127;
    for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<char>((size >> (8 * (7 - i))) & 0xFF);
  }
}

void append_frame(std::string& out, std::uint8_t opcode, std::string_view payload) {
  char header[10];
  write_header(header, opcode, payload.size());
  out.append(header, header_size(payload.size()));
  out.append(payload);
}

void append_close(std::string& out, std::uint16_t code) {
  const char payload[2] = {static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
  append_frame(out, kClose, std::string_view(payload, 2));
}

bool is_valid_utf8(const char* data, std::size_t size) {
  const auto* s = reinterpret_cast<const unsigned char*>(data);
  std::size_t i = 0;
  while (i < size) {
    // ASCII, the common case, eight bytes at a time.
    if (i + 8 <= size) {
      std::uint64_t word = 0;
      std::memcpy(&word, s + i, 8);
      if ((word & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    char32_t code_point = 0;
    const std::size_t length =
        util::decode_utf8(std::string_view(data, size), i, code_point);  // chatd's own check
    if (length == 0) return false;
    i += length;
  }
  return true;
}

}  // namespace chatd::ceiling::ws
