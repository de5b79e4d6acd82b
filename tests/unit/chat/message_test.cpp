#include "chat/message.h"

#include <gtest/gtest.h>

namespace chatd::chat {
namespace {

TEST(MessageId, ThisProcessKnowsItsOwnIdsAndTheirOrder) {
  const std::string first = make_message_id(now_ms());
  const std::string second = make_message_id(now_ms());
  EXPECT_TRUE(made_here(first));
  const auto a = made_here_counter(first);
  const auto b = made_here_counter(second);
  ASSERT_TRUE(a && b);
  EXPECT_EQ((*b - *a) & 0xFFFFFF, 1u) << "one counter step per id";
}

TEST(MessageId, AnotherProcesssIdsAreNotMine) {
  std::string other = make_message_id(now_ms());
  other[8] = other[8] == '0' ? '1' : '0';  // another process's random bytes
  EXPECT_FALSE(made_here(other));
  EXPECT_FALSE(made_here_counter(other));
  EXPECT_FALSE(made_here("not an id"));
}

}  // namespace
}  // namespace chatd::chat
