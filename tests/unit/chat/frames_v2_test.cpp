#include "chat/frames_v2.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <memory>
#include <string>
#include <vector>

namespace chatd::chat::v2 {
namespace {
namespace json = boost::json;

std::variant<ClientFrame, Refusal> parse(std::string_view payload,
                                         FrameLimits limits = FrameLimits{}) {
  return parse_client_frame(payload, limits);
}

// The refusal's code, or "" when the frame was accepted.
std::string code_of(std::string_view payload, FrameLimits limits = FrameLimits{}) {
  const auto result = parse(payload, limits);
  if (const auto* refusal = std::get_if<Refusal>(&result)) {
    EXPECT_FALSE(refusal->error.message.empty()) << refusal->error.code << " has no message";
    return refusal->error.code;
  }
  return "";
}

template <typename Frame>
Frame accepted(std::string_view payload) {
  auto result = parse(payload);
  if (const auto* refusal = std::get_if<Refusal>(&result)) {
    ADD_FAILURE() << "refused " << payload << ": " << refusal->error.code;
    return {};
  }
  const auto* frame = std::get_if<Frame>(&std::get<ClientFrame>(result));
  if (frame == nullptr) {
    ADD_FAILURE() << payload << " parsed as another frame type";
    return {};
  }
  return *frame;
}

json::object object_of(const std::string& frame) {
  return json::parse(frame).as_object();
}

MessagePtr message(std::uint64_t seq, std::string client_id = {}) {
  auto m = std::make_shared<Message>(ChatKey::of("alice", "bob"));
  m->seq = seq;
  m->id = "0123456789abcdef01234567";
  m->sender = "alice";
  m->text = "hi " + std::to_string(seq);
  m->timestamp_ms = 1764044684123;
  m->client_id = std::move(client_id);
  return m;
}

TEST(ParseV2Frame, SendTakesClientIdAndTextAndIgnoresASender) {
  const auto send = accepted<Send>(R"({"type":"send","client_id":"c1","text":"hi","sender":"x"})");
  EXPECT_EQ(send.client_id, "c1");
  EXPECT_EQ(send.text, "hi");
}

TEST(ParseV2Frame, SendErrorsNameTheClientIdWhenItIsReadable) {
  const auto result = parse(R"({"type":"send","client_id":"c9","text":""})");
  const auto* refusal = std::get_if<Refusal>(&result);
  ASSERT_NE(refusal, nullptr);
  EXPECT_EQ(refusal->error.code, "empty_text");
  EXPECT_EQ(refusal->client_id, "c9");
}

TEST(ParseV2Frame, RefusesBadSends) {
  EXPECT_EQ(code_of(R"({"type":"send","text":"hi"})"), "invalid_client_id");
  EXPECT_EQ(code_of(R"({"type":"send","client_id":"","text":"hi"})"), "invalid_client_id");
  EXPECT_EQ(code_of(R"({"type":"send","client_id":7,"text":"hi"})"), "invalid_client_id");
  const std::string long_id(kMaxClientIdBytes + 1, 'c');
  EXPECT_EQ(code_of(R"({"type":"send","client_id":")" + long_id + R"(","text":"hi"})"),
            "invalid_client_id");
  EXPECT_EQ(code_of(R"({"type":"send","client_id":"c","text":5})"), "invalid_text");
  EXPECT_EQ(code_of(R"({"type":"send","client_id":"c","text":"abcdef"})", FrameLimits{5}),
            "text_too_long");
  EXPECT_EQ(code_of(R"({"type":"send","client_id":"c","text":"abcde"})", FrameLimits{5}), "");
}

TEST(ParseV2Frame, RefusesFramesWithoutAKnownType) {
  EXPECT_EQ(code_of("{"), "invalid_json");
  EXPECT_EQ(code_of("[1]"), "invalid_frame");
  EXPECT_EQ(code_of(R"({"text":"hi"})"), "invalid_type");
  EXPECT_EQ(code_of(R"({"type":3})"), "invalid_type");
  EXPECT_EQ(code_of(R"({"type":"dance"})"), "unknown_type");
}

TEST(ParseV2Frame, HistoryDefaultsAndCaps) {
  const auto newest = accepted<HistoryRequest>(R"({"type":"history"})");
  EXPECT_EQ(newest.before, 0u);
  EXPECT_EQ(newest.limit, 0u);
  const auto page = accepted<HistoryRequest>(R"({"type":"history","before":40,"limit":10})");
  EXPECT_EQ(page.before, 40u);
  EXPECT_EQ(page.limit, 10u);
  EXPECT_EQ(accepted<HistoryRequest>(R"({"type":"history","limit":100000})").limit,
            kMaxHistoryPage);
  EXPECT_EQ(code_of(R"({"type":"history","before":-1})"), "invalid_history");
  EXPECT_EQ(code_of(R"({"type":"history","limit":"ten"})"), "invalid_history");
  EXPECT_EQ(code_of(R"({"type":"history","limit":1.5})"), "invalid_history");
}

TEST(ParseV2Frame, TypingReadAndPing) {
  EXPECT_TRUE(accepted<Typing>(R"({"type":"typing"})").typing);
  EXPECT_FALSE(accepted<Typing>(R"({"type":"typing","typing":false})").typing);
  EXPECT_EQ(code_of(R"({"type":"typing","typing":"yes"})"), "invalid_typing");
  EXPECT_EQ(accepted<Read>(R"({"type":"read","seq":41})").seq, 41u);
  EXPECT_EQ(code_of(R"({"type":"read","seq":0})"), "invalid_read");
  EXPECT_EQ(code_of(R"({"type":"read"})"), "invalid_read");
  accepted<Ping>(R"({"type":"ping"})");
}

TEST(V2Frames, HelloSaysWhoIsWhereAndTheLastSeq) {
  Hello hello;
  hello.chat = "5:alice:bob";
  hello.me = "alice";
  hello.peer = "bob";
  hello.peer_devices = 2;
  hello.last_seq = 41;
  auto frame = object_of(hello_frame(hello));
  EXPECT_EQ(frame.at("type"), "hello");
  EXPECT_EQ(frame.at("protocol"), "chat.v2");
  EXPECT_EQ(frame.at("chat"), "5:alice:bob");
  EXPECT_EQ(frame.at("me"), "alice");
  EXPECT_EQ(frame.at("peer"), "bob");
  EXPECT_EQ(frame.at("peer_online"), true);
  EXPECT_EQ(frame.at("peer_devices"), 2);
  EXPECT_EQ(frame.at("last_seq"), 41);
  EXPECT_FALSE(frame.contains("resume_after"));
  hello.peer_devices = 0;
  hello.resuming = true;
  hello.resume_after = 7;
  frame = object_of(hello_frame(hello));
  EXPECT_EQ(frame.at("peer_online"), false);
  EXPECT_EQ(frame.at("resume_after"), 7);
}

TEST(V2Frames, HistoryEmbedsMessageFramesOldestFirst) {
  const std::vector<MessagePtr> page{message(3), message(4)};
  const auto frame = object_of(history_frame(page, true));
  EXPECT_EQ(frame.at("type"), "history");
  EXPECT_EQ(frame.at("has_more"), true);
  const auto& messages = frame.at("messages").as_array();
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0], json::parse(message_frame(*page[0])));
  EXPECT_EQ(messages[1].at("seq"), 4);
}

TEST(V2Frames, AckCarriesTheCommittedMessage) {
  const auto frame = object_of(ack_frame(*message(9, "c-1"), true));
  EXPECT_EQ(frame.at("type"), "ack");
  EXPECT_EQ(frame.at("client_id"), "c-1");
  EXPECT_EQ(frame.at("id"), "0123456789abcdef01234567");
  EXPECT_EQ(frame.at("seq"), 9);
  EXPECT_EQ(frame.at("ts"), "2025-11-25T04:24:44.123Z");
  EXPECT_EQ(frame.at("duplicate"), true);
}

TEST(V2Frames, EventsAndErrors) {
  EXPECT_EQ(object_of(typing_frame("bob", false)),
            (json::object{{"type", "typing"}, {"user", "bob"}, {"typing", false}}));
  EXPECT_EQ(
      object_of(presence_frame("bob", 0)),
      (json::object{{"type", "presence"}, {"user", "bob"}, {"online", false}, {"devices", 0}}));
  EXPECT_EQ(object_of(presence_frame("bob", 2)).at("online"), true);
  EXPECT_EQ(object_of(read_frame("bob", 5)),
            (json::object{{"type", "read"}, {"user", "bob"}, {"seq", 5}}));
  EXPECT_EQ(object_of(pong_frame()), (json::object{{"type", "pong"}}));
  EXPECT_EQ(error_frame("empty_text", "no text", ""), chat::error_frame("empty_text", "no text"));
  EXPECT_EQ(object_of(error_frame("empty_text", "no text", "c1")).at("client_id"), "c1");
}

}  // namespace
}  // namespace chatd::chat::v2
