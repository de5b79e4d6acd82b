#include "auth/chat_identity.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "signed_token.h"

namespace chatd::auth {
namespace {

constexpr std::string_view kSecret = "chat-identity-test-secret";

std::string token_for(const char* subject) {
  const auto exp = std::chrono::system_clock::now() + std::chrono::hours(1);
  return test_tokens::signed_token(
      {{"sub", subject},
       {"exp", std::chrono::duration_cast<std::chrono::seconds>(exp.time_since_epoch()).count()}},
      test_tokens::Alg::hs256, kSecret);
}

TEST(ChatIdentity, WithoutTokensThePathsFirstUserCalls) {
  const auto identity = identify_in_chat(nullptr, std::nullopt, "alice", "bob");
  EXPECT_EQ(identity.refusal, ChatIdentity::Refusal::none);
  EXPECT_EQ(identity.user, "alice");
}

TEST(ChatIdentity, TheTokensSubjectCallsWhenItIsAUserOfTheChat) {
  const TokenVerifier tokens(TokenOptions{std::string(kSecret)});
  const auto identity = identify_in_chat(&tokens, token_for("bob"), "alice", "bob");
  EXPECT_EQ(identity.refusal, ChatIdentity::Refusal::none);
  EXPECT_EQ(identity.user, "bob");
  EXPECT_GT(identity.expires_at, std::chrono::system_clock::now());
}

TEST(ChatIdentity, RefusalsSayWhy) {
  const TokenVerifier tokens(TokenOptions{std::string(kSecret)});
  auto identity = identify_in_chat(&tokens, std::nullopt, "alice", "bob");
  EXPECT_EQ(identity.refusal, ChatIdentity::Refusal::unauthorized);
  EXPECT_EQ(identity.reason, "unauthorized: missing");
  identity = identify_in_chat(&tokens, std::string("not.a.token"), "alice", "bob");
  EXPECT_EQ(identity.refusal, ChatIdentity::Refusal::unauthorized);
  identity = identify_in_chat(&tokens, token_for("mallory"), "alice", "bob");
  EXPECT_EQ(identity.refusal, ChatIdentity::Refusal::forbidden);
  EXPECT_TRUE(identity.reason.starts_with("forbidden"));
  EXPECT_TRUE(identity.user.empty());
}

}  // namespace
}  // namespace chatd::auth
