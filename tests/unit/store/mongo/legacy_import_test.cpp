#include "store/mongo/legacy_import.h"

#include <gtest/gtest.h>

namespace chatd::store::mongo {
namespace {

Participants resolved(std::string_view chat_id, std::vector<std::string> senders) {
  const auto result = resolve_participants(chat_id, senders);
  if (const auto* reason = std::get_if<std::string>(&result)) {
    ADD_FAILURE() << chat_id << ": " << *reason;
    return {};
  }
  return std::get<Participants>(result);
}

std::string refused(std::string_view chat_id, std::vector<std::string> senders) {
  const auto result = resolve_participants(chat_id, senders);
  if (std::holds_alternative<Participants>(result)) {
    ADD_FAILURE() << chat_id << " should not resolve";
    return {};
  }
  return std::get<std::string>(result);
}

TEST(LegacyImport, PlainChatIdNeedsNoSenders) {
  EXPECT_EQ(resolved("alice_bob", {}), (Participants{"alice", "bob"}));
}

TEST(LegacyImport, AmbiguousChatIdIsResolvedBySenders) {
  // "a_b_c" is (a, b_c) or (a_b, c).
  EXPECT_EQ(resolved("a_b_c", {"a_b"}), (Participants{"a_b", "c"}));
  EXPECT_EQ(resolved("a_b_c", {"b_c", "a"}), (Participants{"a", "b_c"}));
  EXPECT_EQ(resolved("a_b_c", {"c"}), (Participants{"a_b", "c"}));
}

TEST(LegacyImport, SortedOrderBreaksTiesTheSendersLeaveOpen) {
  // Both splits hold "x"; only (x, x_x) is in the old service's sorted order.
  EXPECT_EQ(resolved("x_x_x", {"x"}), (Participants{"x", "x_x"}));
}

TEST(LegacyImport, UnresolvableChatIdsSayWhy) {
  EXPECT_NE(refused("alice", {"alice"}).find("not two usernames"), std::string::npos);
  EXPECT_NE(refused("_bob", {}).find("not two usernames"), std::string::npos);
  EXPECT_NE(refused("a_b_c", {}).find("senders do not tell"), std::string::npos);
  EXPECT_NE(refused("a_b_c", {"a", "c"}).find("no split"), std::string::npos);
}

TEST(LegacyImport, ParsesAnOldDocument) {
  Bson document;
  ASSERT_TRUE(bson_init_from_json(document.get(), R"({
      "_id": {"$oid": "5f1d7a3b9c0e8a0001000001"}, "chat_id": "alice_bob",
      "messages": [{"sender": "alice", "text": "hi"}, {"text": "no sender"}, "junk",
                   {"sender": "bob", "text": ""}]})",
                                  -1, nullptr));
  const LegacyChat chat = parse_legacy_document(document.get());
  EXPECT_EQ(chat.source_id, "5f1d7a3b9c0e8a0001000001");
  EXPECT_EQ(chat.chat_id, "alice_bob");
  ASSERT_EQ(chat.messages.size(), 4u);
  EXPECT_EQ(chat.messages[0].sender, "alice");
  EXPECT_EQ(chat.messages[0].text, "hi");
  EXPECT_EQ(chat.messages[1].sender, "");
  EXPECT_EQ(chat.messages[2].text, "");
  EXPECT_EQ(chat.messages[3].sender, "bob");
  EXPECT_FALSE(chat.messages_missing);
  EXPECT_EQ(legacy_client_id(chat, 3), "legacy:5f1d7a3b9c0e8a0001000001:3");
}

TEST(LegacyImport, DocumentWithoutMessagesIsMarked) {
  Bson document;
  ASSERT_TRUE(bson_init_from_json(document.get(), R"({"_id": 7, "chat_id": "a_b"})", -1, nullptr));
  const LegacyChat chat = parse_legacy_document(document.get());
  EXPECT_TRUE(chat.messages_missing);
  EXPECT_EQ(chat.source_id, R"({ "_id" : 7 })");
}

}  // namespace
}  // namespace chatd::store::mongo
