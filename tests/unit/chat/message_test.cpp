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

TEST(OriginBook, KnowsTheConnectionOfTheIdsMadeHere) {
  const std::string before = make_message_id(now_ms());
  note_origin(before, 7);
  enable_origin_book();
  EXPECT_EQ(noted_origin(before), 0u) << "noted before the book was on";
  const std::string id = make_message_id(now_ms());
  note_origin(id, 42);
  EXPECT_EQ(noted_origin(id), 42u);
  std::string other = id;
  other[8] = other[8] == '0' ? '1' : '0';
  EXPECT_EQ(noted_origin(other), 0u) << "another process's id";
  // The ring holds the last 65,536 ids: one made that many later takes the slot.
  std::string later;
  for (int i = 0; i < (1 << 16); ++i) later = make_message_id(now_ms());
  note_origin(later, 43);
  EXPECT_EQ(noted_origin(later), 43u);
  EXPECT_EQ(noted_origin(id), 0u) << "a slot taken over is not the old id's";
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
