#include "users/cached_user_directory.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace chatd::users {
namespace {

using namespace std::chrono_literals;

/// An upstream that records each lookup and answers only when the test says so.
class FakeUpstream final : public UserDirectory {
 public:
  void verify(std::string username, Handler handler) override {
    calls.push_back(username);
    pending.emplace_back(std::move(username), std::move(handler));
  }

  /// Answers every pending lookup with `status`, inline (the decorator must cope with that).
  void answer_all(UserStatus status) {
    auto answering = std::move(pending);
    pending.clear();
    for (auto& [name, handler] : answering) std::move(handler)(status);
  }

  std::vector<std::string> calls;
  std::vector<std::pair<std::string, Handler>> pending;
};

class CachedUserDirectoryTest : public ::testing::Test {
 protected:
  CachedUserDirectoryTest() { make_cache({}); }

  void make_cache(UserCacheOptions options) {
    cache_ = std::make_unique<CachedUserDirectory>(io_.get_executor(), upstream_, options,
                                                   [this] { return now_; });
  }

  /// Starts a lookup; the returned slot is filled when its handler runs.
  std::shared_ptr<std::optional<UserStatus>> lookup(const std::string& name) {
    auto result = std::make_shared<std::optional<UserStatus>>();
    cache_->verify(name, [result](UserStatus status) { *result = status; });
    return result;
  }

  /// Runs every handler that is ready; nothing in these tests waits on time.
  void run_ready_handlers() {
    io_.restart();
    io_.poll();
  }

  /// A full round trip: lookup, upstream answers `upstream_status` if asked, handlers run.
  UserStatus verify_now(const std::string& name, UserStatus upstream_status) {
    auto result = lookup(name);
    upstream_.answer_all(upstream_status);
    run_ready_handlers();
    EXPECT_TRUE(result->has_value());
    return result->value_or(UserStatus::unavailable);
  }

  boost::asio::io_context io_;
  FakeUpstream upstream_;
  std::chrono::steady_clock::time_point now_{std::chrono::hours(1)};
  std::unique_ptr<CachedUserDirectory> cache_;
};

TEST_F(CachedUserDirectoryTest, ConcurrentLookupsOfOneNameShareOneUpstreamRequest) {
  std::vector<std::shared_ptr<std::optional<UserStatus>>> results;
  for (int i = 0; i < 10; ++i) results.push_back(lookup("alice"));
  EXPECT_EQ(upstream_.calls.size(), 1u);

  upstream_.answer_all(UserStatus::found);
  run_ready_handlers();
  for (const auto& result : results) EXPECT_EQ(*result, UserStatus::found);
  EXPECT_EQ(cache_->stats().misses, 10u);
}

TEST_F(CachedUserDirectoryTest, DifferentNamesAreLookedUpSeparately) {
  auto alice = lookup("alice");
  auto bob = lookup("bob");
  EXPECT_EQ(upstream_.calls, (std::vector<std::string>{"alice", "bob"}));
  upstream_.answer_all(UserStatus::not_found);
  run_ready_handlers();
  EXPECT_EQ(*alice, UserStatus::not_found);
  EXPECT_EQ(*bob, UserStatus::not_found);
}

TEST_F(CachedUserDirectoryTest, FoundIsCachedForThePositiveTtl) {
  EXPECT_EQ(verify_now("alice", UserStatus::found), UserStatus::found);

  now_ += 299s;
  auto hit = lookup("alice");
  EXPECT_FALSE(hit->has_value()) << "a cache hit must still complete asynchronously";
  run_ready_handlers();
  EXPECT_EQ(*hit, UserStatus::found);
  EXPECT_EQ(upstream_.calls.size(), 1u);
  EXPECT_EQ(cache_->stats().hits, 1u);

  now_ += 1s;
  EXPECT_EQ(verify_now("alice", UserStatus::found), UserStatus::found);
  EXPECT_EQ(upstream_.calls.size(), 2u);
}

TEST_F(CachedUserDirectoryTest, NotFoundIsCachedForTheNegativeTtl) {
  EXPECT_EQ(verify_now("zoe", UserStatus::not_found), UserStatus::not_found);
  now_ += 29s;
  EXPECT_EQ(verify_now("zoe", UserStatus::found), UserStatus::not_found);
  EXPECT_EQ(upstream_.calls.size(), 1u);

  now_ += 1s;  // she has signed up meanwhile
  EXPECT_EQ(verify_now("zoe", UserStatus::found), UserStatus::found);
  EXPECT_EQ(upstream_.calls.size(), 2u);
}

TEST_F(CachedUserDirectoryTest, UnavailableIsNeverCached) {
  EXPECT_EQ(verify_now("alice", UserStatus::unavailable), UserStatus::unavailable);
  EXPECT_EQ(verify_now("alice", UserStatus::found), UserStatus::found);
  EXPECT_EQ(upstream_.calls.size(), 2u);
  EXPECT_EQ(cache_->stats().upstream_errors, 1u);
}

TEST_F(CachedUserDirectoryTest, SizeIsBounded) {
  make_cache({.max_entries = 2});
  verify_now("a", UserStatus::found);
  now_ += 1s;
  verify_now("b", UserStatus::found);
  now_ += 1s;
  verify_now("c", UserStatus::found);  // evicts "a", the entry closest to expiry
  ASSERT_EQ(upstream_.calls.size(), 3u);

  verify_now("c", UserStatus::found);
  verify_now("b", UserStatus::found);
  EXPECT_EQ(upstream_.calls.size(), 3u);
  verify_now("a", UserStatus::found);
  EXPECT_EQ(upstream_.calls.size(), 4u);
}

TEST_F(CachedUserDirectoryTest, ExpiredEntriesAreDroppedBeforeLiveOnes) {
  make_cache({.positive_ttl = 300s, .negative_ttl = 30s, .max_entries = 2});
  verify_now("ghost", UserStatus::not_found);
  verify_now("alice", UserStatus::found);
  now_ += 31s;                           // "ghost" has expired, "alice" has not
  verify_now("bob", UserStatus::found);  // takes the expired entry's place
  verify_now("alice", UserStatus::found);
  verify_now("bob", UserStatus::found);
  EXPECT_EQ(upstream_.calls.size(), 3u);
}

TEST_F(CachedUserDirectoryTest, CountsHitsMissesAndErrors) {
  verify_now("alice", UserStatus::found);
  verify_now("alice", UserStatus::found);
  verify_now("alice", UserStatus::found);
  verify_now("bob", UserStatus::unavailable);
  const UserCacheStats stats = cache_->stats();
  EXPECT_EQ(stats.hits, 2u);
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(stats.upstream_errors, 1u);
}

}  // namespace
}  // namespace chatd::users
