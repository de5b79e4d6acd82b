#pragma once

#include <boost/json/object.hpp>
#include <string>
#include <string_view>
#include <variant>

#include "chat/chat_key.h"
#include "chat/message.h"

namespace chatd::chat {

/// A frame a client may not send, and why. `code` is a stable snake_case
/// identifier clients can switch on; `message` is for people.
struct FrameError {
  std::string code;
  std::string message;
};

/// A v1 client frame that passed validation: `{"sender": "...", "text": "..."}`.
struct SendRequest {
  std::string sender;
  std::string text;
};

struct FrameLimits {
  std::size_t max_text_bytes = 16 * 1024;
};

/// Parses and validates one v1 text frame from a connection of `chat`.
/// Unknown fields are ignored, as the old service did. Never throws.
std::variant<SendRequest, FrameError> parse_v1_frame(std::string_view payload, const ChatKey& chat,
                                                     const FrameLimits& limits);

/// The frame every connection receives for a committed message. v1 clients
/// read `sender` and `text`; the other fields are additions SPEC §1 allows.
std::string message_frame(const Message& message);

/// The JSON object of message_frame, for frames that embed messages (v2 history pages).
boost::json::object message_object(const Message& message);

/// `{"type":"error","code":...,"message":...}`.
std::string error_frame(std::string_view code, std::string_view message);

}  // namespace chatd::chat
