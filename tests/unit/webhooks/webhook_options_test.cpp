#include "webhooks/webhook_options.h"

#include <gtest/gtest.h>

namespace chatd::webhooks {
namespace {

WebhookOptions configured() {
  WebhookOptions options;
  options.url = "https://push.example.com/chatd";
  options.secret = "0123456789abcdef";
  return options;
}

TEST(WebhookOptions, EventsAreACommaSeparatedList) {
  WebhookOptions options;
  EXPECT_EQ(parse_events("message.offline", options), std::nullopt);
  EXPECT_EQ(options.message_events, store::kHookOffline);
  EXPECT_FALSE(options.read_events);
  EXPECT_EQ(parse_events(" message.created , message.offline,message.read", options), std::nullopt);
  EXPECT_EQ(options.message_events, store::kHookCreated | store::kHookOffline);
  EXPECT_TRUE(options.read_events);
  EXPECT_EQ(parse_events("message.offline,message.sent", options), "message.sent");
}

TEST(WebhookOptions, OffNeedsNothing) {
  EXPECT_EQ(validate(WebhookOptions{}), std::nullopt);
}

TEST(WebhookOptions, EachProblemNamesItsSetting) {
  EXPECT_EQ(validate(configured()), std::nullopt);
  auto options = configured();
  options.secret = "short";
  EXPECT_TRUE(validate(options)->starts_with("WEBHOOK_SECRET"));
  options = configured();
  options.url = "ftp://push.example.com/";
  EXPECT_TRUE(validate(options)->starts_with("WEBHOOK_URL"));
  options = configured();
  options.message_events = 0;
  EXPECT_TRUE(validate(options)->starts_with("WEBHOOK_EVENTS"));
  options = configured();
  options.backoff_max = std::chrono::milliseconds(100);
  EXPECT_TRUE(validate(options)->starts_with("WEBHOOK_BACKOFF_MAX_MS"));
}

}  // namespace
}  // namespace chatd::webhooks
