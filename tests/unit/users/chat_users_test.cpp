#include "users/chat_users.h"

#include <gtest/gtest.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <map>
#include <optional>
#include <string>

namespace chatd::users {
namespace {

/// Answers each name from a table, later, on the context (as a real directory does).
class TableDirectory final : public UserDirectory {
 public:
  TableDirectory(boost::asio::io_context& io, std::map<std::string, UserStatus> table)
      : io_(io), table_(std::move(table)) {}

  void verify(std::string username, Handler handler) override {
    const UserStatus status = table_.at(username);
    boost::asio::post(
        io_, [handler = std::move(handler), status]() mutable { std::move(handler)(status); });
  }

 private:
  boost::asio::io_context& io_;
  std::map<std::string, UserStatus> table_;
};

ChatUsers verdict_of(std::map<std::string, UserStatus> table, std::string user1,
                     std::string user2) {
  boost::asio::io_context io;
  TableDirectory directory(io, std::move(table));
  std::optional<ChatUsers> verdict;
  int calls = 0;
  verify_chat_users(directory, std::move(user1), std::move(user2),
                    boost::asio::bind_executor(io, [&](ChatUsers answer) {
                      verdict = std::move(answer);
                      ++calls;
                    }));
  io.run();
  EXPECT_EQ(calls, 1);
  return verdict.value_or(ChatUsers{UserStatus::unavailable, "no answer"});
}

constexpr auto kFound = UserStatus::found;
constexpr auto kNotFound = UserStatus::not_found;
constexpr auto kUnavailable = UserStatus::unavailable;

TEST(ChatUsers, BothFound) {
  EXPECT_EQ(verdict_of({{"alice", kFound}, {"bob", kFound}}, "alice", "bob").status, kFound);
}

TEST(ChatUsers, TheFirstUnknownUserInPathOrderIsNamed) {
  const auto one = verdict_of({{"alice", kFound}, {"bob", kNotFound}}, "alice", "bob");
  EXPECT_EQ(one.status, kNotFound);
  EXPECT_EQ(one.unknown, "bob");
  const auto both = verdict_of({{"alice", kNotFound}, {"bob", kNotFound}}, "bob", "alice");
  EXPECT_EQ(both.unknown, "bob");
}

TEST(ChatUsers, AnUnavailableServiceWinsOverAnUnknownUser) {
  // A user it could not check is not called unknown.
  const auto verdict = verdict_of({{"alice", kNotFound}, {"bob", kUnavailable}}, "alice", "bob");
  EXPECT_EQ(verdict.status, kUnavailable);
  EXPECT_TRUE(verdict.unknown.empty());
}

}  // namespace
}  // namespace chatd::users
