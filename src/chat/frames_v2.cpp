#include "chat/frames_v2.h"

#include <algorithm>
#include <boost/json.hpp>
#include <limits>
#include <optional>
#include <vector>

#include "chat/json_object.h"

namespace chatd::chat::v2 {
namespace json = boost::json;

namespace {

Refusal refuse(std::string code, std::string message, std::string client_id = {}) {
  return Refusal{FrameError{std::move(code), std::move(message)}, std::move(client_id)};
}

/// A non-negative integer field; absent gives `fallback`, anything else nullopt.
std::optional<std::uint64_t> unsigned_field(const json::object& object, std::string_view key,
                                            std::uint64_t fallback) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) return fallback;
  if (const auto* n = value->if_uint64()) return *n;
  if (const auto* n = value->if_int64(); n != nullptr && *n >= 0) {
    return static_cast<std::uint64_t>(*n);
  }
  return std::nullopt;
}

std::variant<Send, Refusal> parse_send(const json::object& object, const FrameLimits& limits) {
  const json::value* client_id = object.if_contains("client_id");
  if (client_id == nullptr || !client_id->is_string() || client_id->get_string().empty() ||
      client_id->get_string().size() > kMaxClientIdBytes) {
    return refuse("invalid_client_id", "\"client_id\" must be a string of 1 to " +
                                           std::to_string(kMaxClientIdBytes) + " bytes");
  }
  std::string id(client_id->get_string());
  const json::value* text = object.if_contains("text");
  if (text == nullptr || !text->is_string()) {
    return refuse("invalid_text", "\"text\" must be a string", std::move(id));
  }
  const std::string_view body = text->get_string();
  if (body.empty()) return refuse("empty_text", "\"text\" must not be empty", std::move(id));
  if (body.size() > limits.max_text_bytes) {
    return refuse("text_too_long",
                  "\"text\" is longer than " + std::to_string(limits.max_text_bytes) + " bytes",
                  std::move(id));
  }
  return Send{std::move(id), std::string(body)};
}

std::optional<Refusal> check_text(const json::object& object, const FrameLimits& limits,
                                  std::string& text, const std::string& client_id) {
  const json::value* value = object.if_contains("text");
  if (value == nullptr || !value->is_string()) {
    return refuse("invalid_text", "\"text\" must be a string", client_id);
  }
  const std::string_view body = value->get_string();
  if (body.empty()) return refuse("empty_text", "\"text\" must not be empty", client_id);
  if (body.size() > limits.max_text_bytes) {
    return refuse("text_too_long",
                  "\"text\" is longer than " + std::to_string(limits.max_text_bytes) + " bytes",
                  client_id);
  }
  text = std::string(body);
  return std::nullopt;
}

/// An edit or delete: a client id (optional when `client_id_required` is
/// false, as in the REST API), the target by seq or id, an edit's text.
std::variant<Change, Refusal> parse_change(const json::object& object, EntryKind kind,
                                           const FrameLimits& limits, bool client_id_required,
                                           bool target_required) {
  Change change;
  change.kind = kind;
  const json::value* client_id = object.if_contains("client_id");
  if (client_id != nullptr || client_id_required) {
    if (client_id == nullptr || !client_id->is_string() || client_id->get_string().empty() ||
        client_id->get_string().size() > kMaxClientIdBytes) {
      return refuse("invalid_client_id", "\"client_id\" must be a string of 1 to " +
                                             std::to_string(kMaxClientIdBytes) + " bytes");
    }
    change.client_id = std::string(client_id->get_string());
  }
  if (target_required) {
    const auto seq = unsigned_field(object, "seq", 0);
    const json::value* id = object.if_contains("id");
    const bool id_ok = id != nullptr && id->is_string() && id->get_string().size() == 24;
    if (!seq || (*seq == 0 && !id_ok)) {
      return refuse("invalid_target",
                    "name the message by \"seq\" (a positive integer) or \"id\" (24 hex digits)",
                    change.client_id);
    }
    change.seq = *seq;
    if (*seq == 0) change.id = std::string(id->get_string());
  }
  if (kind == EntryKind::edit) {
    if (auto refusal = check_text(object, limits, change.text, change.client_id)) {
      return std::move(*refusal);
    }
  }
  return change;
}

}  // namespace

std::variant<ClientFrame, Refusal> parse_client_frame(std::string_view payload,
                                                      const FrameLimits& limits) {
  const JsonObject parsed(payload, "frame");
  const json::object* object = parsed.get();
  if (object == nullptr) return Refusal{parsed.error(), {}};
  const json::value* type = object->if_contains("type");
  if (type == nullptr || !type->is_string()) {
    return refuse("invalid_type",
                  "\"type\" must be a string (send, history, typing, read, ping, edit, delete, "
                  "block, unblock)");
  }
  const std::string_view kind = type->get_string();
  if (kind == "send") {
    auto send = parse_send(*object, limits);
    if (auto* refusal = std::get_if<Refusal>(&send)) return std::move(*refusal);
    return std::get<Send>(std::move(send));
  }
  if (kind == "history") {
    const auto before = unsigned_field(*object, "before", 0);
    const auto limit = unsigned_field(*object, "limit", 0);
    if (!before || !limit) {
      return refuse("invalid_history", "\"before\" and \"limit\" must be non-negative integers");
    }
    return HistoryRequest{
        *before, static_cast<std::size_t>(std::min<std::uint64_t>(*limit, kMaxHistoryPage))};
  }
  if (kind == "typing") {
    const json::value* typing = object->if_contains("typing");
    if (typing != nullptr && !typing->is_bool()) {
      return refuse("invalid_typing", "\"typing\" must be true or false");
    }
    return Typing{typing == nullptr || typing->get_bool()};
  }
  if (kind == "read") {
    const auto seq = unsigned_field(*object, "seq", 0);
    if (!seq || *seq == 0) return refuse("invalid_read", "\"seq\" must be a positive integer");
    return Read{*seq};
  }
  if (kind == "ping") return Ping{};
  if (kind == "edit" || kind == "delete") {
    auto change = parse_change(*object, kind == "edit" ? EntryKind::edit : EntryKind::remove,
                               limits, true, true);
    if (auto* refusal = std::get_if<Refusal>(&change)) return std::move(*refusal);
    return std::get<Change>(std::move(change));
  }
  if (kind == "block" || kind == "unblock") return Block{kind == "block"};
  return refuse("unknown_type", "unknown frame type \"" + std::string(kind).substr(0, 32) + "\"");
}

std::variant<Send, Refusal> parse_send_body(std::string_view body, const FrameLimits& limits) {
  const JsonObject parsed(body, "body");
  const json::object* object = parsed.get();
  if (object == nullptr) return Refusal{parsed.error(), {}};
  return parse_send(*object, limits);
}

std::variant<Change, Refusal> parse_edit_body(std::string_view body, const FrameLimits& limits) {
  const JsonObject parsed(body, "body");
  const json::object* object = parsed.get();
  if (object == nullptr) return Refusal{parsed.error(), {}};
  return parse_change(*object, EntryKind::edit, limits, false, false);
}

std::string hello_frame(const Hello& hello) {
  json::object frame;
  frame.emplace("type", "hello");
  frame.emplace("protocol", kSubprotocol);
  frame.emplace("chat", hello.chat);
  frame.emplace("me", hello.me);
  frame.emplace("peer", hello.peer);
  frame.emplace("peer_online", hello.peer_devices > 0);
  frame.emplace("peer_devices", hello.peer_devices);
  frame.emplace("last_seq", hello.last_seq);
  frame.emplace("my_read_seq", hello.my_read_seq);
  frame.emplace("peer_read_seq", hello.peer_read_seq);
  frame.emplace("first_seq", hello.first_seq);
  frame.emplace("blocking", hello.blocking);
  frame.emplace("blocked", hello.blocked);
  if (hello.resuming) frame.emplace("resume_after", hello.resume_after);
  return json::serialize(frame);
}

std::string history_frame(std::span<const MessagePtr> messages, bool has_more) {
  return history_frame_within(messages, has_more, std::numeric_limits<std::size_t>::max());
}

std::string history_frame_within(std::span<const MessagePtr> messages, bool has_more,
                                 std::size_t max_bytes) {
  // Built from the message frames (the same bytes as serializing the whole
  // object) so that the newest messages that fit can be counted first.
  constexpr std::string_view kHead = R"({"type":"history","messages":[)";
  constexpr std::string_view kMore = R"(],"has_more":true})";
  constexpr std::string_view kNoMore = R"(],"has_more":false})";
  std::vector<std::string> frames;
  frames.reserve(messages.size());
  std::size_t bytes = kHead.size() + kNoMore.size();
  for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
    std::string frame = message_frame(**it);
    const std::size_t added = frame.size() + (frames.empty() ? 0 : 1);
    if (!frames.empty() && bytes + added > max_bytes) {
      has_more = true;  // the older ones stay for the next page
      break;
    }
    bytes += added;
    frames.push_back(std::move(frame));
  }
  std::string out;
  out.reserve(bytes);
  out += kHead;
  for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
    if (it != frames.rbegin()) out += ',';
    out += *it;
  }
  out += has_more ? kMore : kNoMore;
  return out;
}

std::string ack_frame(const Message& message, bool duplicate) {
  json::object frame;
  frame.emplace("type", "ack");
  frame.emplace("client_id", message.client_id);
  frame.emplace("id", message.id);
  frame.emplace("seq", message.seq);
  if (message.target != 0) frame.emplace("target", message.target);
  frame.emplace("ts", format_timestamp(message.timestamp_ms));
  frame.emplace("duplicate", duplicate);
  return json::serialize(frame);
}

std::string typing_frame(std::string_view user, bool typing) {
  return json::serialize(json::object{{"type", "typing"}, {"user", user}, {"typing", typing}});
}

std::string presence_frame(std::string_view user, std::size_t devices) {
  return json::serialize(json::object{
      {"type", "presence"}, {"user", user}, {"online", devices > 0}, {"devices", devices}});
}

std::string read_frame(std::string_view user, std::uint64_t seq) {
  return json::serialize(json::object{{"type", "read"}, {"user", user}, {"seq", seq}});
}

std::string pong_frame() {
  return R"({"type":"pong"})";
}

std::string error_frame(std::string_view code, std::string_view message,
                        std::string_view client_id) {
  if (client_id.empty()) return chat::error_frame(code, message);
  return json::serialize(json::object{
      {"type", "error"}, {"code", code}, {"message", message}, {"client_id", client_id}});
}

}  // namespace chatd::chat::v2
