// chat::parse_v1_frame, the parser of every text frame a client sends (SPEC §1), and the frames
// chatd writes back: a frame that is accepted must come out of chat::message_frame as JSON that
// carries the same sender and text, and a rejected one must give a valid error frame.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "chat/frames.h"
#include "fuzz_check.h"

namespace {

namespace chat = chatd::chat;
namespace json = boost::json;

void check_error_frame(const chat::FrameError& error) {
  FUZZ_CHECK(!error.code.empty());
  json::error_code ec;
  const json::value frame = json::parse(chat::error_frame(error.code, error.message), ec);
  FUZZ_CHECK(!ec);
  FUZZ_CHECK(frame.at("code").as_string() == error.code);
  FUZZ_CHECK(frame.at("message").as_string() == error.message);
}

void check_message_frame(const chat::ChatKey& key, const chat::SendRequest& request,
                         const chat::FrameLimits& limits) {
  FUZZ_CHECK(key.has_participant(request.sender));
  FUZZ_CHECK(!request.text.empty() && request.text.size() <= limits.max_text_bytes);

  chat::Message message(key);
  message.seq = 1;
  message.timestamp_ms = 1'700'000'000'000;
  message.id = chat::make_message_id(message.timestamp_ms);
  message.sender = request.sender;
  message.text = request.text;
  json::error_code ec;
  const json::value frame = json::parse(chat::message_frame(message), ec);
  FUZZ_CHECK(!ec);
  FUZZ_CHECK(frame.at("sender").as_string() == request.sender);
  FUZZ_CHECK(frame.at("text").as_string() == request.text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const chat::ChatKey key = chat::ChatKey::of("alice", "bob");
  static const chat::FrameLimits limits;
  const std::string_view payload(reinterpret_cast<const char*>(data), size);

  const auto result = chat::parse_v1_frame(payload, key, limits);
  if (const auto* request = std::get_if<chat::SendRequest>(&result)) {
    check_message_frame(key, *request, limits);
  } else {
    check_error_frame(std::get<chat::FrameError>(result));
  }
  return 0;
}
