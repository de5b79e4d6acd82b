#include "webhooks/event.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "store/outbox.h"

namespace chatd::webhooks {
namespace {

namespace json = boost::json;

chat::Message committed(std::string sender, std::string text) {
  chat::Message message(chat::ChatKey::of("alice", "bob"));
  message.seq = 12;
  message.id = "65f1c2a0e4b0a1b2c3d4e5f6";
  message.sender = std::move(sender);
  message.text = std::move(text);
  message.timestamp_ms = 1'764'687'600'123;  // 2025-12-02T15:00:00.123Z
  return message;
}

TEST(WebhookEvent, AnOfflineEventNamesTheRecipientAndTheMessage) {
  const Event event = message_event(committed("alice", "hi \"bob\""), store::kHookOffline, true);
  EXPECT_EQ(event.id, "evt_65f1c2a0e4b0a1b2c3d4e5f6_offline");
  EXPECT_EQ(event.type, "message.offline");
  EXPECT_EQ(event.seq, 12u);
  EXPECT_EQ(event.bit, store::kHookOffline);
  const json::object body = json::parse(event.body).as_object();
  EXPECT_EQ(body.at("id").as_string(), event.id);
  EXPECT_EQ(body.at("type"), "message.offline");
  EXPECT_EQ(body.at("ts"), "2025-12-02T15:00:00.123Z");
  const json::object& data = body.at("data").as_object();
  EXPECT_EQ(data.at("chat"), "5:alice:bob");
  EXPECT_EQ(data.at("users"), (json::array{"alice", "bob"}));
  EXPECT_EQ(data.at("recipient"), "bob");
  const json::object& message = data.at("message").as_object();
  EXPECT_EQ(message.at("type"), "message");
  EXPECT_EQ(message.at("id"), "65f1c2a0e4b0a1b2c3d4e5f6");
  EXPECT_EQ(message.at("seq"), 12);
  EXPECT_EQ(message.at("sender"), "alice");
  EXPECT_EQ(message.at("text"), "hi \"bob\"");
  EXPECT_EQ(message.at("ts"), "2025-12-02T15:00:00.123Z");
}

TEST(WebhookEvent, TheRecipientIsWhoeverDidNotSendIt) {
  const Event event = message_event(committed("bob", "hey"), store::kHookCreated, true);
  EXPECT_EQ(event.id, "evt_65f1c2a0e4b0a1b2c3d4e5f6_created");
  EXPECT_EQ(event.type, "message.created");
  const json::object body = json::parse(event.body).as_object();
  EXPECT_EQ(body.at("data").at("recipient"), "alice");
}

TEST(WebhookEvent, WithoutTextTheMessageCarriesNone) {
  const Event event = message_event(committed("alice", "secret"), store::kHookOffline, false);
  const json::object body = json::parse(event.body).as_object();
  EXPECT_FALSE(body.at("data").at("message").as_object().contains("text"));
  EXPECT_EQ(event.body.find("secret"), std::string::npos);
}

TEST(WebhookEvent, TheSameMessageGivesTheSameBodyEveryTime) {
  const auto message = committed("alice", "hi");
  EXPECT_EQ(message_event(message, store::kHookOffline, true).body,
            message_event(message, store::kHookOffline, true).body);
}

TEST(WebhookSignature, IsHmacSha256OverTheTimestampAndTheBody) {
  // python3 -c "import hmac,hashlib; print(hmac.new(b'0123456789abcdef',
  //             b'1700000000.{\"a\":1}', hashlib.sha256).hexdigest())"
  EXPECT_EQ(signature("0123456789abcdef", 1'700'000'000, R"({"a":1})"),
            "t=1700000000,v1=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23");
  EXPECT_NE(signature("0123456789abcdef", 1'700'000'001, R"({"a":1})"),
            signature("0123456789abcdef", 1'700'000'000, R"({"a":1})"));
}

}  // namespace
}  // namespace chatd::webhooks
