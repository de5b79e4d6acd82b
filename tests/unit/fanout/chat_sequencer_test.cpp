#include "fanout/chat_sequencer.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace chatd::fanout {
namespace {

using namespace std::chrono_literals;

const chat::ChatKey kChat = chat::ChatKey::of("alice", "bob");

chat::MessagePtr message(std::uint64_t seq, chat::ConnectionId origin = 0) {
  auto m = std::make_shared<chat::Message>(kChat);
  m->seq = seq;
  m->text = "m" + std::to_string(seq);
  m->origin = origin;
  return m;
}

std::vector<chat::MessagePtr> messages(std::uint64_t from, std::uint64_t to) {
  std::vector<chat::MessagePtr> result;
  for (auto seq = from; seq <= to; ++seq) result.push_back(message(seq));
  return result;
}

class ChatSequencerTest : public ::testing::Test {
 protected:
  std::vector<chat::MessagePtr> delivered_;
  ChatSequencer sequencer_{[this](const chat::MessagePtr& m) { delivered_.push_back(m); }, 50ms,
                           50ms};

  std::vector<std::uint64_t> seqs() const {
    std::vector<std::uint64_t> result;
    for (const auto& m : delivered_) result.push_back(m->seq);
    return result;
  }
};

TEST_F(ChatSequencerTest, DropsMessagesOfChatsNotFollowed) {
  sequencer_.offer(message(1));
  EXPECT_TRUE(delivered_.empty());
}

TEST_F(ChatSequencerTest, HoldsUntilSyncedThenDeliversFromTheBaseline) {
  sequencer_.follow(kChat);
  sequencer_.offer(message(4));
  sequencer_.offer(message(5));
  EXPECT_TRUE(delivered_.empty()) << "nothing before the baseline is known";
  sequencer_.sync(kChat, messages(1, 4));
  EXPECT_EQ(seqs(), (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(sequencer_.delivered(kChat), 5u);
}

TEST_F(ChatSequencerTest, ALocalCopyKeepsItsOriginOverTheStoresCopy) {
  sequencer_.follow(kChat);
  sequencer_.offer(message(2, 77));
  sequencer_.sync(kChat, messages(1, 2));
  ASSERT_EQ(delivered_.size(), 2u);
  EXPECT_EQ(delivered_[1]->origin, 77u) << "the sender's own connection must not get an echo";
}

TEST_F(ChatSequencerTest, DeliversInSequenceAndDropsDuplicates) {
  sequencer_.follow(kChat);
  sequencer_.sync(kChat, {});
  sequencer_.offer(message(1));
  sequencer_.offer(message(3));
  sequencer_.offer(message(1));
  EXPECT_EQ(seqs(), (std::vector<std::uint64_t>{1}));
  sequencer_.offer(message(2));
  sequencer_.offer(message(3));
  EXPECT_EQ(seqs(), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(sequencer_.held(), 0u);
}

TEST_F(ChatSequencerTest, AGapThatDoesNotCloseIsFilledFromTheStore) {
  sequencer_.follow(kChat);
  sequencer_.sync(kChat, messages(1, 2));
  sequencer_.offer(message(5));
  EXPECT_TRUE(sequencer_.due(ChatSequencer::Clock::now()).empty()) << "held for the hold time";
  const auto requests = sequencer_.due(ChatSequencer::Clock::now() + 60ms);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].after_seq, 2u);
  EXPECT_TRUE(sequencer_.due(ChatSequencer::Clock::now() + 60ms).empty()) << "one fill at a time";
  sequencer_.fill(kChat, messages(3, 5));
  EXPECT_EQ(seqs(), (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(sequencer_.held(), 0u);
}

TEST_F(ChatSequencerTest, AFailedFillIsAskedAgain) {
  sequencer_.follow(kChat);
  sequencer_.sync(kChat, {});
  sequencer_.offer(message(2));
  ASSERT_EQ(sequencer_.due(ChatSequencer::Clock::now() + 60ms).size(), 1u);
  sequencer_.fill_failed(kChat);
  EXPECT_EQ(sequencer_.due(ChatSequencer::Clock::now() + 60ms).size(), 1u);
}

TEST_F(ChatSequencerTest, AFillAfterAnOutageDeliversWhatWasMissedOnce) {
  sequencer_.follow(kChat);
  EXPECT_FALSE(sequencer_.synced(kChat));
  sequencer_.sync(kChat, messages(1, 3));
  EXPECT_TRUE(sequencer_.synced(kChat));
  sequencer_.fill(kChat, messages(2, 6));
  EXPECT_EQ(seqs(), (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6}));
}

TEST_F(ChatSequencerTest, HeldMessagesAreBounded) {
  sequencer_.follow(kChat);
  sequencer_.sync(kChat, {});
  for (std::uint64_t seq = 2; seq < 10'000; ++seq) sequencer_.offer(message(seq));
  EXPECT_LE(sequencer_.held(), 4096u);
  sequencer_.fill(kChat, messages(1, 9'999));
  ASSERT_EQ(delivered_.size(), 9'999u) << "what gave way is read from the store";
  EXPECT_EQ(delivered_.back()->seq, 9'999u);
}

TEST_F(ChatSequencerTest, UnfollowForgetsTheChat) {
  sequencer_.follow(kChat);
  sequencer_.sync(kChat, {});
  sequencer_.unfollow(kChat);
  sequencer_.offer(message(1));
  EXPECT_TRUE(delivered_.empty());
  EXPECT_FALSE(sequencer_.following(kChat));
}

TEST(ChatSequencerConcurrency, TwoSourcesStillDeliverOneOrder) {
  std::vector<std::uint64_t> seqs;
  ChatSequencer sequencer([&](const chat::MessagePtr& m) { seqs.push_back(m->seq); }, 1s, 1s);
  sequencer.follow(kChat);
  sequencer.sync(kChat, {});
  // Odd seqs from one thread, even from another: the order out is 1..N.
  constexpr std::uint64_t n = 20'000;
  std::thread odd([&] {
    for (std::uint64_t seq = 1; seq <= n; seq += 2) sequencer.offer(message(seq));
  });
  std::thread even([&] {
    for (std::uint64_t seq = 2; seq <= n; seq += 2) sequencer.offer(message(seq));
  });
  odd.join();
  even.join();
  // What the bound let go is read back, as the owner would after the hold.
  sequencer.fill(kChat, messages(sequencer.delivered(kChat) + 1, n));
  ASSERT_EQ(seqs.size(), n);
  for (std::uint64_t i = 0; i < n; ++i) ASSERT_EQ(seqs[i], i + 1);
}

}  // namespace
}  // namespace chatd::fanout

namespace chatd::fanout {
namespace {

chat::MessagePtr made_here_message(std::uint64_t seq, chat::ConnectionId origin) {
  auto m = std::make_shared<chat::Message>(kChat);
  m->seq = seq;
  m->id = chat::make_message_id(chat::now_ms());
  m->origin = origin;
  return m;
}

TEST(ChatSequencerStandIn, AStoreCopyOfALocalCommitWaitsForTheLocalCopy) {
  std::vector<chat::MessagePtr> out;
  ChatSequencer sequencer([&](const chat::MessagePtr& m) { out.push_back(m); }, 50ms, 50ms);
  sequencer.follow(kChat);
  sequencer.sync(kChat, {});
  const auto local = made_here_message(1, 42);
  auto copy = std::make_shared<chat::Message>(*local);
  copy->origin = 0;  // as read back from the store
  sequencer.fill(kChat, std::vector<chat::MessagePtr>{copy});
  EXPECT_TRUE(out.empty()) << "the store's copy of this process's commit waits";
  sequencer.offer(local);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]->origin, 42u) << "the local copy, which knows its sender's connection";
  sequencer.offer(local);
  EXPECT_EQ(out.size(), 1u);
}

TEST(ChatSequencerStandIn, ALateLocalCopyDoesNotHoldTheChatForever) {
  std::vector<chat::MessagePtr> out;
  ChatSequencer sequencer([&](const chat::MessagePtr& m) { out.push_back(m); }, 50ms, 50ms);
  sequencer.follow(kChat);
  sequencer.sync(kChat, {});
  auto copy = made_here_message(1, 0);
  sequencer.fill(kChat, std::vector<chat::MessagePtr>{copy});
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(sequencer.due(ChatSequencer::Clock::now() + 60ms).empty());
  ASSERT_EQ(out.size(), 1u) << "delivered after the hold time";
}

}  // namespace
}  // namespace chatd::fanout
