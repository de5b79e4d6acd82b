#include "fanout/redis/wire_format.h"

#include <boost/json.hpp>

namespace chatd::fanout::redis {
namespace json = boost::json;

namespace {

std::optional<json::object> parse_object(std::string_view payload) {
  boost::system::error_code error;
  json::value value = json::parse(payload, error);
  if (error || !value.is_object()) return std::nullopt;
  return std::move(value.as_object());
}

const json::string* string_field(const json::object& object, std::string_view key) {
  const auto* field = object.if_contains(key);
  return field != nullptr && field->is_string() ? &field->as_string() : nullptr;
}

/// A non-negative integer field (JSON numbers chatd writes are integers).
std::optional<std::uint64_t> count_field(const json::object& object, std::string_view key) {
  const auto* field = object.if_contains(key);
  if (field == nullptr) return std::nullopt;
  if (field->is_uint64()) return field->as_uint64();
  if (field->is_int64() && field->as_int64() >= 0) {
    return static_cast<std::uint64_t>(field->as_int64());
  }
  return std::nullopt;
}

std::optional<std::int64_t> integer_field(const json::object& object, std::string_view key) {
  const auto* field = object.if_contains(key);
  if (field == nullptr) return std::nullopt;
  if (field->is_int64()) return field->as_int64();
  if (field->is_uint64() && field->as_uint64() <= std::uint64_t(INT64_MAX)) {
    return static_cast<std::int64_t>(field->as_uint64());
  }
  return std::nullopt;
}

std::optional<Publish> decode_message(const chat::ChatKey& chat, const json::object& o,
                                      Publish publish) {
  const auto* id = string_field(o, "id");
  const auto* sender = string_field(o, "sender");
  const auto* text = string_field(o, "text");
  const auto* client_id = string_field(o, "client_id");
  const auto seq = count_field(o, "seq");
  const auto timestamp = integer_field(o, "ts");
  if (id == nullptr || sender == nullptr || text == nullptr || !seq || *seq == 0 || !timestamp) {
    return std::nullopt;
  }
  // A filler (an unwritten reservation, sealed) has no sender.
  const bool filler =
      count_field(o, "entry") == static_cast<std::uint64_t>(chat::EntryKind::filler);
  if (!chat.has_participant(std::string(*sender)) && !(filler && sender->empty())) {
    return std::nullopt;
  }
  auto message = std::make_shared<chat::Message>(chat);
  message->seq = *seq;
  message->id = std::string(*id);
  message->sender = std::string(*sender);
  message->text = std::string(*text);
  message->timestamp_ms = *timestamp;
  if (client_id != nullptr) message->client_id = std::string(*client_id);
  // A change (docs/protocol.md, "A chat's order"): absent on a message.
  if (const auto entry = count_field(o, "entry")) {
    if (*entry > static_cast<std::uint64_t>(chat::EntryKind::filler)) return std::nullopt;
    message->kind = static_cast<chat::EntryKind>(*entry);
    message->target = count_field(o, "target").value_or(0);
    if (const auto* target_id = string_field(o, "target_id")) {
      message->target_id = std::string(*target_id);
    }
  }
  publish.message = std::move(message);
  return publish;
}

}  // namespace

std::string channel_of(const chat::ChatKey& chat) {
  return std::string(kChannelPrefix) + chat.str();
}

std::optional<chat::ChatKey> chat_of_channel(std::string_view channel) {
  if (!channel.starts_with(kChannelPrefix)) return std::nullopt;
  return chat::ChatKey::parse(channel.substr(kChannelPrefix.size()));
}

std::string presence_key(const chat::ChatKey& chat, const std::string& user) {
  // The user's name is length-prefixed, like the chat key, so no two
  // (chat, user) pairs share a key.
  return "chatd:presence:" + std::to_string(user.size()) + ":" + user + ":" + chat.str();
}

std::string encode_message(std::string_view instance, const chat::Message& m) {
  json::object object{{"from", instance},     {"kind", "message"},       {"id", m.id},
                      {"seq", m.seq},         {"sender", m.sender},      {"text", m.text},
                      {"ts", m.timestamp_ms}, {"client_id", m.client_id}};
  if (chat::is_change(m.kind)) {
    object.emplace("entry", static_cast<std::uint64_t>(m.kind));
    object.emplace("target", m.target);
    object.emplace("target_id", m.target_id);
  }
  return json::serialize(object);
}

std::string encode_event(std::string_view instance, std::string_view frame) {
  return json::serialize(json::object{{"from", instance}, {"kind", "event"}, {"frame", frame}});
}

std::string encode_presence(std::string_view instance, std::string_view user, Presence presence) {
  return json::serialize(json::object{{"from", instance},
                                      {"kind", "presence"},
                                      {"user", user},
                                      {"devices", presence.devices},
                                      {"version", presence.version}});
}

std::string encode_resync(std::string_view instance) {
  return json::serialize(json::object{{"from", instance}});
}

std::optional<Publish> decode_publish(const chat::ChatKey& chat, std::string_view payload) {
  const auto object = parse_object(payload);
  if (!object) return std::nullopt;
  const json::object& o = *object;
  const auto* from = string_field(o, "from");
  const auto* kind = string_field(o, "kind");
  if (from == nullptr || kind == nullptr) return std::nullopt;
  Publish publish;
  publish.from = std::string(*from);
  if (*kind == "message") {
    publish.kind = Publish::Kind::message;
    return decode_message(chat, o, std::move(publish));
  }
  if (*kind == "event") {
    const auto* frame = string_field(o, "frame");
    if (frame == nullptr) return std::nullopt;
    publish.kind = Publish::Kind::event;
    publish.frame = std::string(*frame);
    return publish;
  }
  if (*kind == "presence") {
    const auto* user = string_field(o, "user");
    const auto devices = count_field(o, "devices");
    const auto version = count_field(o, "version");
    if (user == nullptr || !devices || !version || *version == 0) return std::nullopt;
    publish.user = std::string(*user);
    if (!chat.has_participant(publish.user)) return std::nullopt;
    publish.kind = Publish::Kind::presence;
    publish.presence = Presence{static_cast<std::size_t>(*devices), *version};
    return publish;
  }
  return std::nullopt;
}

std::optional<std::string> decode_resync(std::string_view payload) {
  const auto object = parse_object(payload);
  if (!object) return std::nullopt;
  const auto* from = string_field(*object, "from");
  if (from == nullptr) return std::nullopt;
  return std::string(*from);
}

}  // namespace chatd::fanout::redis
