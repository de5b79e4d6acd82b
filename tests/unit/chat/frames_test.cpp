#include "chat/frames.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cctype>
#include <string>
#include <unordered_set>

#include "chat/message.h"

namespace chatd::chat {
namespace {
namespace json = boost::json;

const ChatKey kChat = ChatKey::of("alice", "bob");

std::variant<SendRequest, FrameError> parse(std::string_view payload,
                                            FrameLimits limits = FrameLimits{}) {
  return parse_v1_frame(payload, kChat, limits);
}

// The error code of a rejected frame, or "" when it was accepted.
std::string code_of(std::string_view payload, FrameLimits limits = FrameLimits{}) {
  const auto result = parse(payload, limits);
  if (const auto* error = std::get_if<FrameError>(&result)) {
    EXPECT_FALSE(error->message.empty()) << "code " << error->code << " has no message";
    return error->code;
  }
  return "";
}

SendRequest accepted(std::string_view payload, FrameLimits limits = FrameLimits{}) {
  auto result = parse(payload, limits);
  if (const auto* error = std::get_if<FrameError>(&result)) {
    ADD_FAILURE() << "rejected " << payload << ": " << error->code << " " << error->message;
    return {};
  }
  return std::get<SendRequest>(std::move(result));
}

// ---------------------------------------------------------------------------
// parse_v1_frame
// ---------------------------------------------------------------------------

TEST(ParseV1Frame, ValidFrameBecomesSendRequest) {
  const SendRequest request = accepted(R"({"sender": "alice", "text": "hi"})");
  EXPECT_EQ(request.sender, "alice");
  EXPECT_EQ(request.text, "hi");
  const SendRequest other = accepted(R"({"text":"yo","sender":"bob"})");
  EXPECT_EQ(other.sender, "bob");
  EXPECT_EQ(other.text, "yo");
}

TEST(ParseV1Frame, ExtraFieldsAreIgnored) {
  const SendRequest request = accepted(
      R"({"sender":"alice","text":"hi","type":"message","id":7,"nested":{"a":[1,2]},"x":null})");
  EXPECT_EQ(request.sender, "alice");
  EXPECT_EQ(request.text, "hi");
}

TEST(ParseV1Frame, MalformedJson) {
  EXPECT_EQ(code_of(""), "invalid_json");
  EXPECT_EQ(code_of("{"), "invalid_json");
  EXPECT_EQ(code_of("not json"), "invalid_json");
  EXPECT_EQ(code_of(R"({"sender":"alice","text":"hi")"), "invalid_json");
  EXPECT_EQ(code_of(R"({"sender":"alice","text":"hi"} trailing)"), "invalid_json");
  EXPECT_EQ(code_of(R"({sender:"alice",text:"hi"})"), "invalid_json");
  EXPECT_EQ(code_of("{\"sender\":\"alice\",\"text\":\"\xC0\xAF\"}"), "invalid_json");
}

TEST(ParseV1Frame, NonObjectJson) {
  EXPECT_EQ(code_of(R"([{"sender":"alice","text":"hi"}])"), "invalid_frame");
  EXPECT_EQ(code_of(R"("hello")"), "invalid_frame");
  EXPECT_EQ(code_of("42"), "invalid_frame");
  EXPECT_EQ(code_of("null"), "invalid_frame");
  EXPECT_EQ(code_of("true"), "invalid_frame");
}

TEST(ParseV1Frame, MissingOrNonStringSender) {
  EXPECT_EQ(code_of(R"({"text":"hi"})"), "invalid_sender");
  EXPECT_EQ(code_of(R"({"sender":null,"text":"hi"})"), "invalid_sender");
  EXPECT_EQ(code_of(R"({"sender":42,"text":"hi"})"), "invalid_sender");
  EXPECT_EQ(code_of(R"({"sender":["alice"],"text":"hi"})"), "invalid_sender");
  EXPECT_EQ(code_of(R"({"sender":{"name":"alice"},"text":"hi"})"), "invalid_sender");
  EXPECT_EQ(code_of(R"({})"), "invalid_sender");
}

TEST(ParseV1Frame, MissingOrNonStringText) {
  EXPECT_EQ(code_of(R"({"sender":"alice"})"), "invalid_text");
  EXPECT_EQ(code_of(R"({"sender":"alice","text":null})"), "invalid_text");
  EXPECT_EQ(code_of(R"({"sender":"alice","text":5})"), "invalid_text");
  EXPECT_EQ(code_of(R"({"sender":"alice","text":["hi"]})"), "invalid_text");
  EXPECT_EQ(code_of(R"({"sender":"alice","text":true})"), "invalid_text");
}

TEST(ParseV1Frame, SenderMustBeAParticipant) {
  EXPECT_EQ(code_of(R"({"sender":"carol","text":"hi"})"), "sender_not_participant");
  EXPECT_EQ(code_of(R"({"sender":"Alice","text":"hi"})"), "sender_not_participant");
  EXPECT_EQ(code_of(R"({"sender":"alice ","text":"hi"})"), "sender_not_participant");
  EXPECT_EQ(code_of(R"({"sender":"","text":"hi"})"), "sender_not_participant");
  EXPECT_EQ(code_of(R"({"sender":"alice\u0000","text":"hi"})"), "sender_not_participant");
  EXPECT_EQ(code_of(R"({"sender":"5:alice:bob","text":"hi"})"), "sender_not_participant");
}

TEST(ParseV1Frame, SenderNotParticipantMessageNamesTheSender) {
  const auto result = parse(R"({"sender":"mallory","text":"hi"})");
  const auto* error = std::get_if<FrameError>(&result);
  ASSERT_NE(error, nullptr);
  EXPECT_NE(error->message.find("mallory"), std::string::npos) << error->message;
}

TEST(ParseV1Frame, EmptyTextRejected) {
  EXPECT_EQ(code_of(R"({"sender":"alice","text":""})"), "empty_text");
}

TEST(ParseV1Frame, TextLengthLimitInBytes) {
  const FrameLimits limits{10};
  const std::string exactly(10, 'x');
  EXPECT_EQ(accepted(R"({"sender":"alice","text":")" + exactly + R"("})", limits).text, exactly);
  EXPECT_EQ(code_of(R"({"sender":"alice","text":")" + exactly + R"(x"})", limits), "text_too_long");
  // Five two-byte characters are ten bytes; six are twelve.
  const std::string five_e = "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9";
  EXPECT_EQ(accepted(R"({"sender":"alice","text":")" + five_e + R"("})", limits).text, five_e);
  EXPECT_EQ(code_of(R"({"sender":"alice","text":")" + five_e + "\xC3\xA9" + R"("})", limits),
            "text_too_long");
  // The limit applies to the decoded text, not to the escaped JSON.
  EXPECT_EQ(accepted(R"({"sender":"alice","text":"\u00e9\u00e9\u00e9\u00e9\u00e9"})", limits).text,
            five_e);
}

TEST(ParseV1Frame, DefaultLimitIsSixteenKiB) {
  EXPECT_EQ(FrameLimits{}.max_text_bytes, 16u * 1024u);
  const std::string exactly(16 * 1024, 'y');
  EXPECT_EQ(accepted(R"({"sender":"bob","text":")" + exactly + R"("})").text, exactly);
  EXPECT_EQ(code_of(R"({"sender":"bob","text":")" + exactly + R"(y"})"), "text_too_long");
}

TEST(ParseV1Frame, TextIsPreservedExactly) {
  EXPECT_EQ(accepted(R"({"sender":"alice","text":"caf\u00e9"})").text, "caf\xC3\xA9");
  EXPECT_EQ(accepted("{\"sender\":\"alice\",\"text\":\"caf\xC3\xA9\"}").text, "caf\xC3\xA9");
  EXPECT_EQ(accepted(R"({"sender":"alice","text":"\ud83d\ude00"})").text, "\xF0\x9F\x98\x80");
  EXPECT_EQ(accepted("{\"sender\":\"alice\",\"text\":\"\xE4\xBD\xA0\xE5\xA5\xBD\"}").text,
            "\xE4\xBD\xA0\xE5\xA5\xBD");
  EXPECT_EQ(accepted(R"({"sender":"alice","text":"a\u0000b"})").text, std::string("a\0b", 3));
  EXPECT_EQ(accepted(R"({"sender":"alice","text":"line1\nline2\r\n"})").text, "line1\nline2\r\n");
  EXPECT_EQ(accepted(R"({"sender":"alice","text":"she said \"hi\" \\ ok"})").text,
            "she said \"hi\" \\ ok");
  EXPECT_EQ(accepted(R"({"sender":"alice","text":"  padded  "})").text, "  padded  ");
  EXPECT_EQ(accepted(R"({"sender":"alice","text":"<script>&amp;</script>"})").text,
            "<script>&amp;</script>");
}

TEST(ParseV1Frame, SenderMayBeAUnicodeParticipant) {
  const ChatKey chat = ChatKey::of("\xC3\xA9mile", "\xE5\xBC\xA0");
  const auto result = parse_v1_frame(R"({"sender":"\u00e9mile","text":"salut"})", chat, {});
  const auto* request = std::get_if<SendRequest>(&result);
  ASSERT_NE(request, nullptr);
  EXPECT_EQ(request->sender, "\xC3\xA9mile");
}

// ---------------------------------------------------------------------------
// message_frame, error_frame, timestamps and ids
// ---------------------------------------------------------------------------

TEST(FormatTimestamp, IsoUtcWithMilliseconds) {
  EXPECT_EQ(format_timestamp(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_timestamp(1764044684123), "2025-11-25T04:24:44.123Z");
  EXPECT_EQ(format_timestamp(1764044684005), "2025-11-25T04:24:44.005Z");
  EXPECT_EQ(format_timestamp(951782400999), "2000-02-29T00:00:00.999Z");
}

TEST(MessageFrame, ParsesBackToAllFields) {
  Message message(ChatKey::of("alice", "bob"));
  message.seq = 42;
  message.id = "69252f8c0123456789abcdef";
  message.sender = "alice";
  message.text = "she said \"hi\"\n\xF0\x9F\x98\x80";
  message.text.push_back('\0');
  message.text += "end";
  message.timestamp_ms = 1764044684123;

  const std::string frame = message_frame(message);
  json::error_code error;
  const json::value value = json::parse(frame, error);
  ASSERT_FALSE(error) << frame;
  ASSERT_TRUE(value.is_object()) << frame;
  const json::object& object = value.as_object();
  EXPECT_EQ(object.at("sender").as_string(), "alice");
  EXPECT_EQ(std::string_view(object.at("text").as_string()), std::string_view(message.text));
  EXPECT_EQ(object.at("type").as_string(), "message");
  EXPECT_EQ(object.at("id").as_string(), "69252f8c0123456789abcdef");
  EXPECT_EQ(json::value_to<std::uint64_t>(object.at("seq")), 42u);
  EXPECT_EQ(object.at("ts").as_string(), "2025-11-25T04:24:44.123Z");
}

TEST(MessageFrame, IsReadableByAV1ClientParser) {
  // What a v1 client sends back is what a v1 client receives: the frame is
  // itself a valid v1 frame for the chat.
  Message message(kChat);
  message.seq = 1;
  message.id = "000000000000000000000001";
  message.sender = "bob";
  message.text = "round trip \u00e9";
  const auto result = parse(message_frame(message));
  const auto* request = std::get_if<SendRequest>(&result);
  ASSERT_NE(request, nullptr);
  EXPECT_EQ(request->sender, "bob");
  EXPECT_EQ(request->text, message.text);
}

TEST(ErrorFrame, HasTypeCodeAndEscapedMessage) {
  const std::string frame = error_frame("sender_not_participant", "sender \"eve\" is \\ not\nhere");
  json::error_code error;
  const json::value value = json::parse(frame, error);
  ASSERT_FALSE(error) << frame;
  const json::object& object = value.as_object();
  EXPECT_EQ(object.at("type").as_string(), "error");
  EXPECT_EQ(object.at("code").as_string(), "sender_not_participant");
  EXPECT_EQ(object.at("message").as_string(), "sender \"eve\" is \\ not\nhere");
  EXPECT_EQ(object.size(), 3u);
}

TEST(MakeMessageId, TwentyFourLowercaseHexDigits) {
  const std::string id = make_message_id(1764044684123);
  ASSERT_EQ(id.size(), 24u) << id;
  for (char c : id) {
    EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f')) << id;
  }
  // The first four bytes are the seconds, as in a MongoDB ObjectId.
  EXPECT_EQ(id.substr(0, 8), "69252f8c");
}

TEST(MakeMessageId, TenThousandIdsAreDistinct) {
  std::unordered_set<std::string> ids;
  const std::int64_t now = now_ms();
  for (int i = 0; i < 10'000; ++i) {
    const std::string id = make_message_id(now);
    ASSERT_EQ(id.size(), 24u);
    EXPECT_TRUE(ids.insert(id).second) << "duplicate id " << id << " after " << i;
  }
  EXPECT_EQ(ids.size(), 10'000u);
}

}  // namespace
}  // namespace chatd::chat
