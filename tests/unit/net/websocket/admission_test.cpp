#include "net/websocket/admission.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <string>

#include "auth/token_verifier.h"

namespace chatd::net::websocket {
namespace {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;

const auto kLocal = boost::asio::ip::make_address("127.0.0.1");

Request upgrade(std::string target) {
  Request request(http::verb::get, target, 11);
  request.set(http::field::upgrade, "websocket");
  request.set(http::field::connection, "Upgrade");
  return request;
}

std::string base64url(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                     reinterpret_cast<const unsigned char*>(data.data()),
                                     static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(length));
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

/// An HS256 token for `subject`, valid for an hour.
std::string token_for(std::string_view subject, std::string_view secret) {
  const auto exp = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count() +
                   3600;
  const std::string signing_input =
      base64url(R"({"alg":"HS256","typ":"JWT"})") + "." +
      base64url(R"({"sub":")" + std::string(subject) + R"(","exp":)" + std::to_string(exp) + "}");
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac,
       &mac_length);
  return signing_input + "." +
         base64url(std::string_view(reinterpret_cast<const char*>(mac), mac_length));
}

const Refused* refused(const std::variant<Admitted, Refused>& result) {
  return std::get_if<Refused>(&result);
}

TEST(Admission, WithoutTokensTheConnectingUserIsThePathsFirstUser) {
  ConnectionLimits limits(ConnectionLimitOptions{});
  const auto result = admit(upgrade("/ws/alice/bob?after=4"), kLocal, nullptr, limits);
  ASSERT_EQ(refused(result), nullptr) << refused(result)->reason;
  const auto& admitted = std::get<Admitted>(result);
  EXPECT_EQ(admitted.user, "alice");
  EXPECT_EQ(admitted.path.user2, "bob");
  EXPECT_EQ(admitted.path.after_seq, 4u);
  EXPECT_NE(admitted.ticket, nullptr);
  EXPECT_EQ(admitted.token_expires_at, std::chrono::system_clock::time_point{});
}

TEST(Admission, AMalformedPathIsRefusedWith4400) {
  ConnectionLimits limits(ConnectionLimitOptions{});
  for (const char* target : {"/ws/alice", "/ws/alice/bob/carol", "/ws/alice/%00bob"}) {
    const auto result = admit(upgrade(target), kLocal, nullptr, limits);
    ASSERT_NE(refused(result), nullptr) << target;
    EXPECT_EQ(refused(result)->code, 4400) << target;
  }
}

TEST(Admission, TokensDecideTheUserAndRefuseWith4401Or4403) {
  ConnectionLimits limits(ConnectionLimitOptions{});
  const auth::TokenVerifier tokens(auth::TokenOptions{"s3cret", std::chrono::seconds(30)});
  // No token: 4401.
  auto result = admit(upgrade("/ws/alice/bob"), kLocal, &tokens, limits);
  ASSERT_NE(refused(result), nullptr);
  EXPECT_EQ(refused(result)->code, 4401);
  // A token of bob connecting as the path's second user: bob is the user.
  result =
      admit(upgrade("/ws/alice/bob?token=" + token_for("bob", "s3cret")), kLocal, &tokens, limits);
  ASSERT_EQ(refused(result), nullptr) << refused(result)->reason;
  EXPECT_EQ(std::get<Admitted>(result).user, "bob");
  EXPECT_GT(std::get<Admitted>(result).token_expires_at, std::chrono::system_clock::now());
  // In the Authorization header too; a token of mallory is not for this chat: 4403.
  Request request = upgrade("/ws/alice/bob");
  request.set(http::field::authorization, "Bearer " + token_for("mallory", "s3cret"));
  result = admit(request, kLocal, &tokens, limits);
  ASSERT_NE(refused(result), nullptr);
  EXPECT_EQ(refused(result)->code, 4403);
  // Signed with another key: 4401.
  result =
      admit(upgrade("/ws/alice/bob?token=" + token_for("alice", "other")), kLocal, &tokens, limits);
  ASSERT_NE(refused(result), nullptr);
  EXPECT_EQ(refused(result)->code, 4401);
}

TEST(Admission, TheLimitsComeLastAndReleaseTheirCountWithTheTicket) {
  ConnectionLimitOptions options;
  options.max_per_user = 1;
  ConnectionLimits limits(options);
  auto first = admit(upgrade("/ws/alice/bob"), kLocal, nullptr, limits);
  ASSERT_EQ(refused(first), nullptr);
  // A bad path is refused for the path, not for the limits.
  auto bad = admit(upgrade("/ws/alice"), kLocal, nullptr, limits);
  ASSERT_NE(refused(bad), nullptr);
  EXPECT_EQ(refused(bad)->code, 4400);
  auto second = admit(upgrade("/ws/alice/carol"), kLocal, nullptr, limits);
  ASSERT_NE(refused(second), nullptr);
  EXPECT_EQ(refused(second)->code, 4429);
  std::get<Admitted>(first).ticket.reset();  // the first connection closed
  auto third = admit(upgrade("/ws/alice/carol"), kLocal, nullptr, limits);
  EXPECT_EQ(refused(third), nullptr);
}

TEST(Admission, V2IsSpokenWhenOfferedAndATokenIsNeverTheProtocol) {
  EXPECT_EQ(negotiate_protocol(""), ProtocolVersion::v1);
  EXPECT_EQ(negotiate_protocol("chat.v2"), ProtocolVersion::v2);
  EXPECT_EQ(negotiate_protocol("bearer.abc.def.ghi, chat.v2"), ProtocolVersion::v2);
  EXPECT_EQ(negotiate_protocol("bearer.abc.def.ghi"), ProtocolVersion::v1);
  EXPECT_EQ(negotiate_protocol("chat.v3"), ProtocolVersion::v1);
}

}  // namespace
}  // namespace chatd::net::websocket
