#include "net/caller_rate_limits.h"

#include <gtest/gtest.h>

#include <string>

namespace chatd::net {
namespace {

using namespace std::chrono_literals;
using Clock = CallerRateLimits::Clock;

TEST(CallerRateLimits, EachCallerHasItsOwnAllowance) {
  CallerRateLimits limits(10, 3);
  const auto now = Clock::now();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limits.try_take("alice", now));
  EXPECT_FALSE(limits.try_take("alice", now)) << "the burst is spent";
  EXPECT_TRUE(limits.try_take("bob", now)) << "another caller is not held back";
  EXPECT_TRUE(limits.try_take("alice", now + 100ms)) << "10 a second: one more after 100 ms";
}

TEST(CallerRateLimits, ZeroMeansNoLimit) {
  CallerRateLimits limits(0, 1);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limits.try_take("alice"));
}

TEST(CallerRateLimits, RemembersABoundedNumberOfCallers) {
  CallerRateLimits limits(1, 1, 160);
  const auto now = Clock::now();
  for (int i = 0; i < 10'000; ++i) limits.try_take("user" + std::to_string(i), now);
  EXPECT_LE(limits.callers(), 160u);
}

}  // namespace
}  // namespace chatd::net
