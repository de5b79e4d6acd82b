#include "chat/frames.h"

#include <boost/json.hpp>

#include "chat/json_object.h"

namespace chatd::chat {
namespace json = boost::json;

std::variant<SendRequest, FrameError> parse_v1_frame(std::string_view payload, const ChatKey& chat,
                                                     const FrameLimits& limits) {
  const JsonObject parsed(payload, "frame");
  const json::object* object = parsed.get();
  if (object == nullptr) return parsed.error();

  const json::value* sender = object->if_contains("sender");
  if (sender == nullptr || !sender->is_string()) {
    return FrameError{"invalid_sender",
                      "\"sender\" must be a string naming one of the chat's users"};
  }
  const json::value* text = object->if_contains("text");
  if (text == nullptr || !text->is_string()) {
    return FrameError{"invalid_text", "\"text\" must be a string"};
  }
  const std::string_view sender_name = sender->get_string();
  if (!chat.has_participant(sender_name)) {
    return FrameError{"sender_not_participant",
                      "sender \"" + std::string(sender_name) + "\" is not a user of this chat"};
  }
  const std::string_view body = text->get_string();
  if (body.empty()) return FrameError{"empty_text", "\"text\" must not be empty"};
  if (body.size() > limits.max_text_bytes) {
    return FrameError{"text_too_long", "\"text\" is longer than " +
                                           std::to_string(limits.max_text_bytes) + " bytes"};
  }
  return SendRequest{std::string(sender_name), std::string(body)};
}

std::string message_frame(const Message& message) {
  return json::serialize(message_object(message));
}

namespace {

std::string_view change_type(EntryKind kind) {
  switch (kind) {
    case EntryKind::message:
      return "message";
    case EntryKind::edit:
      return "edited";
    case EntryKind::remove:
      return "deleted";
    case EntryKind::erase:
      return "erased";
    case EntryKind::block:
    case EntryKind::unblock:
      return "blocked";
    case EntryKind::filler:  // never sent (Hub::deliver, Session::shows)
      return "filler";
  }
  return "message";
}

// A change (v2 only: docs/protocol.md, "A chat's order").
json::object change_object(const Message& change) {
  json::object frame;
  frame.reserve(7);
  frame.emplace("type", change_type(change.kind));
  // 0: the answer to a block or unblock that changed nothing (no entry).
  if (change.seq != 0) frame.emplace("seq", change.seq);
  switch (change.kind) {
    case EntryKind::edit:
    case EntryKind::remove:
      frame.emplace("target", change.target);
      frame.emplace("id", change.target_id);
      frame.emplace("sender", change.sender);
      if (change.kind == EntryKind::edit) frame.emplace("text", change.text);
      break;
    case EntryKind::erase:
      frame.emplace("user", change.sender);
      break;
    case EntryKind::block:
    case EntryKind::unblock:
      frame.emplace("user", change.sender);
      frame.emplace("blocked", change.kind == EntryKind::block);
      break;
    case EntryKind::message:
    case EntryKind::filler:
      break;
  }
  frame.emplace("ts", format_timestamp(change.timestamp_ms));
  return frame;
}

}  // namespace

json::object message_object(const Message& message) {
  if (is_change(message.kind)) return change_object(message);
  json::object frame;
  frame.reserve(8);
  frame.emplace("sender", message.sender);
  frame.emplace("text", message.text);
  frame.emplace("type", "message");
  frame.emplace("id", message.id);
  frame.emplace("seq", message.seq);
  frame.emplace("ts", format_timestamp(message.timestamp_ms));
  if (message.edited_ms != 0 && !message.deleted) {
    frame.emplace("edited_ts", format_timestamp(message.edited_ms));
  }
  if (message.deleted) frame.emplace("deleted", true);
  return frame;
}

std::string error_frame(std::string_view code, std::string_view message) {
  json::object frame;
  frame.reserve(3);
  frame.emplace("type", "error");
  frame.emplace("code", code);
  frame.emplace("message", message);
  return json::serialize(frame);
}

}  // namespace chatd::chat
