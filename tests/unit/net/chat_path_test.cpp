#include "net/chat_path.h"

#include <gtest/gtest.h>

#include <string>

namespace chatd::net {
namespace {

ChatPath parsed_ok(std::string_view target) {
  auto result = parse_chat_path(target);
  if (const auto* error = std::get_if<ChatPathError>(&result)) {
    ADD_FAILURE() << "rejected " << target << ": " << error->reason;
    return {};
  }
  return std::get<ChatPath>(std::move(result));
}

// The reason a target is rejected, or "" when it was accepted.
std::string rejection(std::string_view target) {
  const auto result = parse_chat_path(target);
  if (const auto* error = std::get_if<ChatPathError>(&result)) {
    EXPECT_FALSE(error->reason.empty()) << target;
    return error->reason.empty() ? "(empty reason)" : error->reason;
  }
  return "";
}

TEST(ParseChatPath, UsersInPathOrder) {
  const ChatPath path = parsed_ok("/ws/alice/bob");
  EXPECT_EQ(path.user1, "alice");
  EXPECT_EQ(path.user2, "bob");
  EXPECT_EQ(path.token, "");
  const ChatPath reversed = parsed_ok("/ws/bob/alice");
  EXPECT_EQ(reversed.user1, "bob");
  EXPECT_EQ(reversed.user2, "alice");
}

TEST(ParseChatPath, SameUserTwiceIsAWellFormedPath) {
  const ChatPath path = parsed_ok("/ws/alice/alice");
  EXPECT_EQ(path.user1, "alice");
  EXPECT_EQ(path.user2, "alice");
}

TEST(ParseChatPath, PercentDecoding) {
  const ChatPath path = parsed_ok("/ws/a%20b/%C3%A9");
  EXPECT_EQ(path.user1, "a b");
  EXPECT_EQ(path.user2, "\xC3\xA9");
  // Names from the old service's ambiguity case keep their underscores.
  const ChatPath underscores = parsed_ok("/ws/a_b/c");
  EXPECT_EQ(underscores.user1, "a_b");
  // An encoded slash is part of a name, not a separator.
  const ChatPath slash = parsed_ok("/ws/team%2Fops/bob");
  EXPECT_EQ(slash.user1, "team/ops");
  EXPECT_EQ(slash.user2, "bob");
  const ChatPath emoji = parsed_ok("/ws/%F0%9F%98%80/%E5%BC%A0%E4%B8%89");
  EXPECT_EQ(emoji.user1, "\xF0\x9F\x98\x80");
  EXPECT_EQ(emoji.user2, "\xE5\xBC\xA0\xE4\xB8\x89");
  EXPECT_EQ(parsed_ok("/ws/a%3Ab/c").user1, "a:b");
}

TEST(ParseChatPath, TokenQueryParameter) {
  EXPECT_EQ(parsed_ok("/ws/a/b?token=xyz").token, "xyz");
  EXPECT_EQ(parsed_ok("/ws/a/b?other=1&token=abc.def.ghi&x=2").token, "abc.def.ghi");
  EXPECT_EQ(parsed_ok("/ws/a/b?token=a%2Bb").token, "a+b");
  EXPECT_EQ(parsed_ok("/ws/a/b?other=1").token, "");
  const ChatPath path = parsed_ok("/ws/alice/bob?token=xyz");
  EXPECT_EQ(path.user1, "alice");
  EXPECT_EQ(path.user2, "bob");
}

TEST(ParseChatPath, AfterIsTheResumePoint) {
  EXPECT_FALSE(parsed_ok("/ws/a/b").after_seq.has_value());
  EXPECT_EQ(parsed_ok("/ws/a/b?after=0").after_seq, 0u);
  EXPECT_EQ(parsed_ok("/ws/a/b?token=t&after=41").after_seq, 41u);
  EXPECT_EQ(parsed_ok("/ws/a/b?after=18446744073709551615").after_seq, 18446744073709551615u);
  for (const char* bad : {"/ws/a/b?after=", "/ws/a/b?after", "/ws/a/b?after=-1", "/ws/a/b?after=4x",
                          "/ws/a/b?after=18446744073709551616", "/ws/a/b?after=%20"}) {
    EXPECT_NE(rejection(bad), "") << bad;
  }
}

TEST(ParseChatPath, WrongNumberOfSegments) {
  EXPECT_NE(rejection("/ws/a"), "");
  EXPECT_NE(rejection("/ws/"), "");
  EXPECT_NE(rejection("/ws"), "");
  EXPECT_NE(rejection("/ws/a/b/c"), "");
  EXPECT_NE(rejection("/ws/a/b/"), "");
  EXPECT_NE(rejection("/"), "");
}

TEST(ParseChatPath, EmptyNames) {
  EXPECT_NE(rejection("/ws//b"), "");
  EXPECT_NE(rejection("/ws/a/"), "");
  EXPECT_NE(rejection("/ws//"), "");
}

TEST(ParseChatPath, InvalidUsernames) {
  EXPECT_NE(rejection("/ws/%0A/b"), "");
  EXPECT_NE(rejection("/ws/a/b%00c"), "");
  EXPECT_NE(rejection("/ws/a%09b/c"), "");
  EXPECT_NE(rejection("/ws/%C0%AF/b"), "");     // overlong UTF-8
  EXPECT_NE(rejection("/ws/a/%ED%A0%80"), "");  // surrogate
  EXPECT_NE(rejection("/ws/" + std::string(65, 'x') + "/b"), "");
  EXPECT_NE(rejection("/ws/a/" + std::string(65, 'y')), "");
  EXPECT_EQ(rejection("/ws/" + std::string(64, 'x') + "/b"), "");
  // 64 decoded bytes written as 192 characters of percent-encoding are fine.
  std::string encoded;
  for (int i = 0; i < 64; ++i) encoded += "%41";
  EXPECT_EQ(parsed_ok("/ws/" + encoded + "/b").user1, std::string(64, 'A'));
  EXPECT_NE(rejection("/ws/" + encoded + "%41/b"), "");
}

TEST(ParseChatPath, ReasonExplainsAnInvalidName) {
  EXPECT_NE(rejection("/ws/%0A/b").find("control"), std::string::npos);
  EXPECT_NE(rejection("/ws/" + std::string(65, 'x') + "/b").find("64"), std::string::npos);
}

TEST(ParseChatPath, WrongPrefix) {
  EXPECT_NE(rejection("/wss/a/b"), "");
  EXPECT_NE(rejection("/WS/a/b"), "");
  EXPECT_NE(rejection("/api/a/b"), "");
  EXPECT_NE(rejection("ws/a/b"), "");
}

TEST(ParseChatPath, InvalidPercentEncoding) {
  EXPECT_NE(rejection("/ws/%zz/b"), "");
  EXPECT_NE(rejection("/ws/a/b%"), "");
  EXPECT_NE(rejection("/ws/a%2/b"), "");
}

TEST(IsChatTarget, OnlyTheWsPrefix) {
  EXPECT_TRUE(is_chat_target("/ws/alice/bob"));
  EXPECT_TRUE(is_chat_target("/ws/alice/bob?token=x"));
  EXPECT_TRUE(is_chat_target("/ws/"));
  EXPECT_TRUE(is_chat_target("/ws/a"));  // a chat target, though malformed: close 4400
  EXPECT_FALSE(is_chat_target("/ws"));
  EXPECT_FALSE(is_chat_target("/wss/a/b"));
  EXPECT_FALSE(is_chat_target("/"));
  EXPECT_FALSE(is_chat_target("/healthz"));
  EXPECT_FALSE(is_chat_target("/api/ws/a/b"));
  EXPECT_FALSE(is_chat_target(""));
}

}  // namespace
}  // namespace chatd::net
