#include "fanout/redis/stand_in_counter.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace chatd::fanout::redis {
namespace {

chat::MessagePtr made_here() {
  auto message = std::make_shared<chat::Message>(*chat::ChatKey::parse("5:alice:bob"));
  message->id = chat::make_message_id(chat::now_ms());
  return message;
}

TEST(StandInCounter, OwnCommitsAreUnannouncedUntilTheirBatchIs) {
  StandInCounter counter;
  const std::vector<chat::MessagePtr> batch{made_here(), made_here(), made_here()};
  for (const auto& message : batch) EXPECT_TRUE(counter.not_yet_announced(*message));
  counter.announce(batch);
  for (const auto& message : batch) EXPECT_FALSE(counter.not_yet_announced(*message));
  EXPECT_TRUE(counter.not_yet_announced(*made_here())) << "made after the batch";
}

TEST(StandInCounter, ABatchOutOfIdOrderMovesPastItsNewestId) {
  // A renumbered message comes in seq order, not id order.
  StandInCounter counter;
  const auto older = made_here();
  const auto newer = made_here();
  const std::vector<chat::MessagePtr> batch{newer, older};
  counter.announce(batch);
  EXPECT_FALSE(counter.not_yet_announced(*older));
  EXPECT_FALSE(counter.not_yet_announced(*newer));
}

TEST(StandInCounter, AnotherInstancesMessageIsNeverAStandIn) {
  StandInCounter counter;
  chat::Message other(*chat::ChatKey::parse("5:alice:bob"));
  other.id = "0123456789abcdef01234567";  // not this process's random bytes
  EXPECT_FALSE(counter.not_yet_announced(other));
}

}  // namespace
}  // namespace chatd::fanout::redis
