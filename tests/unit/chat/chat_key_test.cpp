#include "chat/chat_key.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace chatd::chat {
namespace {

TEST(ChatKey, IsTheUnorderedPair) {
  EXPECT_EQ(ChatKey::of("alice", "bob"), ChatKey::of("bob", "alice"));
  EXPECT_EQ(ChatKey::of("alice", "bob").str(), ChatKey::of("bob", "alice").str());
  EXPECT_FALSE(ChatKey::of("alice", "bob") == ChatKey::of("alice", "carol"));
}

TEST(ChatKey, StringFormatIsLengthPrefixed) {
  const ChatKey key = ChatKey::of("bob", "alice");
  EXPECT_EQ(key.str(), "5:alice:bob");
  EXPECT_EQ(key.first(), "alice");
  EXPECT_EQ(key.second(), "bob");
  EXPECT_EQ(ChatKey::of("a_b", "c").str(), "3:a_b:c");
  EXPECT_EQ(ChatKey::of("a", "b_c").str(), "1:a:b_c");
  // Names sort by bytes ("z" < "é"), and the length is in bytes: é is two.
  EXPECT_EQ(ChatKey::of("\xC3\xA9", "z").str(), "1:z:\xC3\xA9");
  EXPECT_EQ(ChatKey::of("\xF0\x9F\x98\x80", "\xC3\xA9").str(), "2:\xC3\xA9:\xF0\x9F\x98\x80");
  EXPECT_EQ(ChatKey::of("aaaaaaaaaaaa", "b").str(), "12:aaaaaaaaaaaa:b");
}

TEST(ChatKey, OldServiceCollisionIsGone) {
  // The old service keyed both of these chats "a_b_c".
  EXPECT_FALSE(ChatKey::of("a_b", "c") == ChatKey::of("a", "b_c"));
  EXPECT_NE(ChatKey::of("a_b", "c").str(), ChatKey::of("a", "b_c").str());
}

TEST(ChatKey, AdversarialNamesNeverCollide) {
  const std::vector<std::string> names = {
      "a",     "b",       "c",     "a_b",  "b_c",       "a:b",   "b:a",        "1",   "1:a",
      "a:",    ":a",      ":",     "::",   "1:",        "2:a:b", "1:a:b",      "10",  "10:a",
      "0",     "0:",      "2",     "2:ab", "ab",        "a:b:c", "3:a:b",      "1:1", "11",
      "1:1:1", "b_",      "_",     "a b",  "\xC3\xA9",  "e",     "a/b",        "A",   "aa",
      "a:1:b", "5:alice", "alice", "bob",  "alice:bob", "5",     "5:alice:bob"};
  std::map<std::string, std::pair<std::string, std::string>> seen;
  std::size_t pairs = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (std::size_t j = i; j < names.size(); ++j) {
      const ChatKey key = ChatKey::of(names[i], names[j]);
      const auto unordered = std::minmax(names[i], names[j]);
      const auto [it, inserted] = seen.emplace(key.str(), unordered);
      ++pairs;
      EXPECT_TRUE(inserted) << "pair (" << names[i] << ", " << names[j] << ") and ("
                            << it->second.first << ", " << it->second.second << ") share key "
                            << key.str();
      // And the key is the same whichever way round the pair is given.
      EXPECT_EQ(ChatKey::of(names[j], names[i]).str(), key.str());
    }
  }
  EXPECT_EQ(seen.size(), pairs);
}

TEST(ChatKey, SpecificTrickyPairsDiffer) {
  EXPECT_NE(ChatKey::of("1:a", "b").str(), ChatKey::of("1", "a:b").str());
  EXPECT_NE(ChatKey::of("a:b", "c").str(), ChatKey::of("a", "b:c").str());
  // "1:1:1:1" reads one way only: first "1", second "1:1".
  EXPECT_EQ(ChatKey::of("1:1", "1").str(), "1:1:1:1");
  const auto parsed = ChatKey::parse("1:1:1:1");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->first(), "1");
  EXPECT_EQ(parsed->second(), "1:1");
  EXPECT_NE(ChatKey::of("10", "a").str(), ChatKey::of("1", "0:a").str());
}

TEST(ChatKey, ParseRoundTrips) {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"alice", "bob"},
      {"a_b", "c"},
      {"1:a", "b"},
      {"1", "a:b"},
      {"a", "a"},
      {":", "::"},
      {"\xC3\xA9", "\xF0\x9F\x98\x80"},
      {std::string(64, 'x'), std::string(64, 'y')}};
  for (const auto& [a, b] : pairs) {
    const ChatKey key = ChatKey::of(a, b);
    const auto parsed = ChatKey::parse(key.str());
    ASSERT_TRUE(parsed.has_value()) << key.str();
    EXPECT_EQ(*parsed, key);
    EXPECT_EQ(parsed->first(), key.first());
    EXPECT_EQ(parsed->second(), key.second());
    EXPECT_EQ(parsed->str(), key.str());
  }
}

TEST(ChatKey, ParseRejectsMalformedKeys) {
  for (const std::string bad :
       {"", "x", ":", "::", ":a:b", "3:ab", "2:ab", "-1:a:b", "1:b:a", "a:b:c", "5:alice",
        "9:alice:bob", "99999999999999999999999:a:b", " 1:a:b", "1 :a:b", "0x1:a:b"}) {
    EXPECT_FALSE(ChatKey::parse(bad).has_value()) << "accepted '" << bad << "'";
  }
}

TEST(ChatKey, ParseAcceptsKeysInCanonicalOrder) {
  const auto parsed = ChatKey::parse("1:a:b");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->first(), "a");
  EXPECT_EQ(parsed->second(), "b");
  EXPECT_EQ(*parsed, ChatKey::of("b", "a"));
}

TEST(ChatKey, Participants) {
  const ChatKey key = ChatKey::of("alice", "bob");
  EXPECT_TRUE(key.has_participant("alice"));
  EXPECT_TRUE(key.has_participant("bob"));
  EXPECT_FALSE(key.has_participant("carol"));
  EXPECT_FALSE(key.has_participant("alic"));
  EXPECT_FALSE(key.has_participant(""));
  EXPECT_FALSE(key.has_participant("5:alice:bob"));
  EXPECT_EQ(key.peer_of("alice"), "bob");
  EXPECT_EQ(key.peer_of("bob"), "alice");
}

TEST(ChatKey, SelfChat) {
  const ChatKey key = ChatKey::of("a", "a");
  EXPECT_EQ(key.str(), "1:a:a");
  EXPECT_TRUE(key.has_participant("a"));
  EXPECT_FALSE(key.has_participant("b"));
  EXPECT_EQ(key.peer_of("a"), "a");
  const auto parsed = ChatKey::parse("1:a:a");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, key);
  EXPECT_FALSE(key == ChatKey::of("a", "aa"));
}

}  // namespace
}  // namespace chatd::chat
