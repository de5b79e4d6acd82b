#include "webhooks/event.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <boost/json.hpp>

#include "chat/frames.h"
#include "store/outbox.h"

namespace chatd::webhooks {

namespace json = boost::json;

std::string_view event_type(std::uint8_t bit) {
  return bit == store::kHookCreated ? "message.created"
         : bit == store::kHookRead  ? "message.read"
                                    : "message.offline";
}

Event read_event(const store::PendingRead& read) {
  // The id names the receipt (chat, reader, seq): the same on every attempt,
  // another once the receipt moves on.
  const std::string identity =
      read.chat.str() + '\n' + read.reader + '\n' + std::to_string(read.seq);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(identity.data()), identity.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "evt_read_";
  for (int i = 0; i < 12; ++i) {
    id.push_back(kHex[digest[i] >> 4]);
    id.push_back(kHex[digest[i] & 0xf]);
  }
  const std::string& peer =
      read.reader == read.chat.first() ? read.chat.second() : read.chat.first();
  json::object body{
      {"id", id},
      {"type", "message.read"},
      {"ts", chat::format_timestamp(read.ts_ms)},
      {"data", json::object{{"chat", read.chat.str()},
                            {"users", json::array{read.chat.first(), read.chat.second()}},
                            {"reader", read.reader},
                            {"peer", peer},
                            {"seq", read.seq}}}};
  return Event{.id = std::move(id),
               .type = "message.read",
               .chat = read.chat,
               .seq = read.seq,
               .bit = store::kHookRead,
               .reader = read.reader,
               .body = json::serialize(body)};
}

Event message_event(const chat::Message& message, std::uint8_t bit, bool include_text) {
  Event event{.id = "evt_" + message.id + "_" + store::hook_name(bit),
              .type = std::string(event_type(bit)),
              .chat = message.chat,
              .seq = message.seq,
              .bit = bit,
              .reader = {},
              .body = {}};
  json::object data = chat::message_object(message);
  if (!include_text) data.erase("text");
  const std::string& recipient =
      message.sender == message.chat.first() ? message.chat.second() : message.chat.first();
  json::object body{
      {"id", event.id},
      {"type", event.type},
      {"ts", chat::format_timestamp(message.timestamp_ms)},
      {"data", json::object{{"chat", message.chat.str()},
                            {"users", json::array{message.chat.first(), message.chat.second()}},
                            {"recipient", recipient},
                            {"message", std::move(data)}}}};
  event.body = json::serialize(body);
  return event;
}

std::string signature(std::string_view secret, std::int64_t unix_seconds, std::string_view body) {
  const std::string t = std::to_string(unix_seconds);
  std::string signed_payload;
  signed_payload.reserve(t.size() + 1 + body.size());
  signed_payload.append(t).append(".").append(body);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signed_payload.data()), signed_payload.size(), digest,
       &length);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string header = "t=" + t + ",v1=";
  for (unsigned int i = 0; i < length; ++i) {
    header.push_back(kHex[digest[i] >> 4]);
    header.push_back(kHex[digest[i] & 0xf]);
  }
  return header;
}

}  // namespace chatd::webhooks
