#include "loadgen/centrifugo.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/json.hpp>

namespace chatd::loadgen::centrifugo {
namespace json = boost::json;
namespace {

constexpr std::string_view kPushKey = R"({"push":{"channel":")";
constexpr std::string_view kPubKey = R"(","pub":{"data":)";  // from the channel's closing quote
constexpr std::string_view kOffsetKey = R"("offset":)";
constexpr std::string_view kIdKey = R"({"id":)";
constexpr std::string_view kPublishReplyTail = R"(,"publish":{}})";

/// base64url without padding (RFC 7515's encoding of a JWT's parts).
std::string base64url(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                     reinterpret_cast<const unsigned char*>(bytes.data()),
                                     static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(length));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

std::uint64_t read_number(std::string_view text) {
  std::uint64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') break;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

std::uint64_t uint_of(const json::value* value) {
  if (value == nullptr) return 0;
  if (value->is_uint64()) return value->get_uint64();
  if (value->is_int64() && value->get_int64() > 0)
    return static_cast<std::uint64_t>(value->get_int64());
  return 0;
}

/// A publication as this program publishes and Centrifugo pushes it: the
/// channel, then the data (the v1 frame as sent), then info, offset, epoch.
/// Returns false to hand the line to the JSON parser.
bool classify_fast(std::string_view line, std::string_view run_id, ReceivedMessage& message,
                   LineKind& kind) {
  if (line == kPong) {
    kind = LineKind::ping;
    return true;
  }
  if (line.starts_with(kIdKey)) {
    // {"id":N,"publish":{}}
    std::size_t at = kIdKey.size();
    while (at < line.size() && line[at] >= '0' && line[at] <= '9') ++at;
    if (at == kIdKey.size() || line.substr(at) != kPublishReplyTail) return false;
    kind = LineKind::publish_reply;
    return true;
  }
  if (!line.starts_with(kPushKey)) return false;
  const std::size_t channel_end = line.find('"', kPushKey.size());
  if (channel_end == std::string_view::npos) return false;
  if (line.substr(channel_end, kPubKey.size()) != kPubKey) return false;
  FrameKind frame_kind = FrameKind::other;
  std::string_view rest;
  if (!classify_message_fast(line.substr(channel_end + kPubKey.size()), run_id, message, frame_kind,
                             rest)) {
    return false;
  }
  if (frame_kind != FrameKind::message) {
    kind = LineKind::foreign;
    return true;
  }
  // The padding is all 'x' and names are plain, so the first "offset": after
  // the text's header is the publication's.
  const std::size_t offset_at = rest.find(kOffsetKey);
  message.seq = offset_at == std::string_view::npos
                    ? 0
                    : read_number(rest.substr(offset_at + kOffsetKey.size()));
  kind = LineKind::publication;
  return true;
}

LineKind classify_parsed(std::string_view line, std::string_view run_id, ReceivedMessage& message,
                         std::string& error_code) {
  json::error_code parse_error;
  const json::value value = json::parse(line, parse_error);
  const json::object* object = parse_error ? nullptr : value.if_object();
  if (object == nullptr) return LineKind::other;
  if (object->empty()) return LineKind::ping;
  if (const json::value* error = object->if_contains("error"); error != nullptr) {
    const json::object* fields = error->if_object();
    const json::value* text = fields != nullptr ? fields->if_contains("message") : nullptr;
    error_code = std::to_string(uint_of(fields != nullptr ? fields->if_contains("code") : nullptr));
    if (text != nullptr && text->is_string()) error_code += " " + std::string(text->get_string());
    return LineKind::error;
  }
  if (const json::value* push = object->if_contains("push"); push != nullptr) {
    const json::object* push_fields = push->if_object();
    const json::value* pub = push_fields != nullptr ? push_fields->if_contains("pub") : nullptr;
    const json::object* pub_fields = pub != nullptr ? pub->if_object() : nullptr;
    const json::value* data = pub_fields != nullptr ? pub_fields->if_contains("data") : nullptr;
    const json::object* frame = data != nullptr ? data->if_object() : nullptr;
    if (frame == nullptr) return LineKind::other;  // a join, a leave, a disconnect, …
    const json::value* sender = frame->if_contains("sender");
    const json::value* text = frame->if_contains("text");
    if (sender == nullptr || !sender->is_string() || text == nullptr || !text->is_string()) {
      return LineKind::foreign;
    }
    if (!parse_text(text->get_string(), run_id, message)) return LineKind::foreign;
    // The sender view must outlive `value`: find it in the line itself (as
    // payload.cpp does; a name that needed escaping is not one of this run's).
    const std::string_view name = sender->get_string();
    const std::size_t at = line.find(name);
    message.sender =
        at == std::string_view::npos ? std::string_view("\\") : line.substr(at, name.size());
    message.seq = uint_of(pub_fields->if_contains("offset"));
    return LineKind::publication;
  }
  if (object->contains("publish")) return LineKind::publish_reply;
  if (object->contains("connect")) return LineKind::connect_reply;
  if (object->contains("subscribe")) return LineKind::subscribe_reply;
  return LineKind::other;
}

/// Reads until a reply of kind `wanted` arrives, answering pings; false on
/// an error reply or a failed read (described in `failure`).
asio::awaitable<bool> wait_for_reply(WebSocket& ws, beast::flat_buffer& in, LineKind wanted,
                                     std::string_view step, std::string& failure) {
  ReceivedMessage ignored;
  std::string error_code;
  for (;;) {
    const auto [error, bytes] = co_await ws.async_read(in, use_tuple);
    if (error) {
      failure = std::string(step) + ": " + describe_end(ws, error);
      co_return false;
    }
    bool replied = false;
    bool refused = false;
    bool pinged = false;
    for_each_line(std::string_view(static_cast<const char*>(in.data().data()), bytes),
                  [&](std::string_view line) {
                    const LineKind kind = classify_line(line, {}, ignored, error_code);
                    replied |= kind == wanted;
                    refused |= kind == LineKind::error;
                    pinged |= kind == LineKind::ping;
                  });
    in.consume(in.size());
    if (refused) {
      failure = std::string(step) + ": error " + error_code;
      co_return false;
    }
    if (pinged) {
      const auto [pong_error, pong_bytes] = co_await ws.async_write(asio::buffer(kPong), use_tuple);
      if (pong_error) {
        failure = std::string(step) + ": pong: " + pong_error.message();
        co_return false;
      }
    }
    if (replied) co_return true;
  }
}

}  // namespace

std::string channel_of(std::string_view a, std::string_view b) {
  if (b < a) std::swap(a, b);
  std::string channel = "chat:";
  channel.append(a).append(".").append(b);
  return channel;
}

std::string connection_token(std::string_view user, std::string_view secret) {
  std::string signing_input = base64url(R"({"alg":"HS256","typ":"JWT"})");
  // Names are plain (options.cpp), so the claim needs no escaping.
  signing_input.append(".").append(base64url(R"({"sub":")" + std::string(user) + R"("})"));
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int mac_length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(),
       mac.data(), &mac_length);
  const std::string signature =
      base64url(std::string_view(reinterpret_cast<const char*>(mac.data()), mac_length));
  return signing_input + "." + signature;
}

FrameEnvelope publish_envelope(std::string_view channel) {
  FrameEnvelope envelope;
  envelope.head = std::string(kIdKey);
  envelope.middle = R"(,"publish":{"channel":")" + std::string(channel) + R"(","data":)";
  envelope.tail = "}}";
  envelope.first_id = 3;
  return envelope;
}

LineKind classify_line(std::string_view line, std::string_view run_id, ReceivedMessage& message,
                       std::string& error_code) {
  LineKind kind = LineKind::other;
  if (!run_id.empty() && classify_fast(line, run_id, message, kind)) return kind;
  return classify_parsed(line, run_id, message, error_code);
}

asio::awaitable<bool> join(WebSocket& ws, beast::flat_buffer& in, std::string_view token,
                           std::string_view channel, std::chrono::nanoseconds timeout,
                           std::string& failure) {
  // The WebSocket has no read timeout once open (it is held idle for as long
  // as the run wants): bound the two round trips on the TCP stream instead.
  auto& tcp = beast::get_lowest_layer(ws);
  tcp.expires_after(timeout);
  const std::string connect = R"({"id":1,"connect":{"token":")" + std::string(token) + R"("}})";
  const auto [connect_error, connect_bytes] =
      co_await ws.async_write(asio::buffer(connect), use_tuple);
  if (connect_error) {
    failure = "connect: " + connect_error.message();
    co_return false;
  }
  const bool connected =
      co_await wait_for_reply(ws, in, LineKind::connect_reply, "connect", failure);
  if (!connected) co_return false;
  const std::string subscribe =
      R"({"id":2,"subscribe":{"channel":")" + std::string(channel) + R"("}})";
  const auto [subscribe_error, subscribe_bytes] =
      co_await ws.async_write(asio::buffer(subscribe), use_tuple);
  if (subscribe_error) {
    failure = "subscribe: " + subscribe_error.message();
    co_return false;
  }
  const bool subscribed =
      co_await wait_for_reply(ws, in, LineKind::subscribe_reply, "subscribe", failure);
  if (!subscribed) co_return false;
  tcp.expires_never();
  co_return true;
}

}  // namespace chatd::loadgen::centrifugo
