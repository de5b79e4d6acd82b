#include "webhooks/hooking_store.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace chatd::webhooks {
namespace {

const chat::ChatKey kAliceBob = chat::ChatKey::of("alice", "bob");

/// Records what reaches the store, in order.
class RecordingStore final : public store::Store {
 public:
  std::vector<chat::PendingMessage> appended;

  void append(chat::PendingMessage message, AppendHandler) override {
    appended.push_back(std::move(message));
  }
  void history(chat::ChatKey, store::HistoryQuery, HistoryHandler) override {}
  void mark_read(chat::ChatKey, std::string, std::uint64_t, ReadMarksHandler) override {}
  void read_marks(chat::ChatKey, ReadMarksHandler) override {}
  void conversations(std::string, std::size_t, ConversationsHandler) override {}
  bool ready() const override { return true; }
  store::QueueStats queue_stats() const override { return {}; }
  void blocks(std::string, BlocksHandler) override {}
  std::unique_ptr<store::Outbox> make_outbox() override { return nullptr; }
  std::unique_ptr<store::Maintenance> make_maintenance() override { return nullptr; }
  void drain() override {}
};

/// Presence answered when the test says, in any order (as Redis may), or at
/// once (as the hub does).
class ScriptedFanout final : public fanout::Fanout {
 public:
  explicit ScriptedFanout(bool at_once) : at_once_(at_once) {}
  std::vector<DevicesHandler> asked;
  std::size_t devices_now = 0;

  void start() override {}
  void stop() override {}
  void publish(std::span<const chat::MessagePtr>) override {}
  void publish_event(const chat::ChatKey&, chat::ConnectionId,
                     std::shared_ptr<const std::string>) override {}
  void presence_changed(const chat::ChatKey&, chat::ConnectionId, const std::string&,
                        std::size_t) override {}
  void devices(const chat::ChatKey&, const std::string&, DevicesHandler handler) override {
    if (at_once_) {
      handler(devices_now);
    } else {
      asked.push_back(std::move(handler));
    }
  }
  bool devices_answer_at_once() const override { return at_once_; }
  std::string_view state() const override { return "off"; }

 private:
  bool at_once_;
};

chat::PendingMessage from_alice(std::string text) {
  return chat::PendingMessage{
      .chat = kAliceBob, .sender = "alice", .text = std::move(text), .client_id = {}, .origin = 0};
}

std::vector<std::string> texts(const std::vector<chat::PendingMessage>& messages) {
  std::vector<std::string> out;
  for (const auto& message : messages) out.push_back(message.text);
  return out;
}

TEST(HookingStore, MarksEveryMessageCreatedAndTheOfflineOnesOffline) {
  RecordingStore store;
  ScriptedFanout fanout(true);
  HookingStore hooking(store, fanout, store::kHookCreated | store::kHookOffline);
  hooking.append(from_alice("bob away"), {});
  fanout.devices_now = 1;
  hooking.append(from_alice("bob here"), {});
  ASSERT_EQ(store.appended.size(), 2u);
  EXPECT_EQ(store.appended[0].hooks, store::kHookCreated | store::kHookOffline);
  EXPECT_EQ(store.appended[1].hooks, store::kHookCreated);
}

TEST(HookingStore, WithoutOfflineEventsNoPresenceIsAsked) {
  RecordingStore store;
  ScriptedFanout fanout(false);
  HookingStore hooking(store, fanout, store::kHookCreated);
  hooking.append(from_alice("one"), {});
  EXPECT_TRUE(fanout.asked.empty());
  ASSERT_EQ(store.appended.size(), 1u);
  EXPECT_EQ(store.appended[0].hooks, store::kHookCreated);
}

TEST(HookingStore, AppendsOfAChatKeepTheirOrderWhateverOrderPresenceAnswers) {
  RecordingStore store;
  ScriptedFanout fanout(false);
  HookingStore hooking(store, fanout, store::kHookOffline);
  hooking.append(from_alice("1"), {});
  hooking.append(from_alice("2"), {});
  hooking.append(from_alice("3"), {});
  ASSERT_EQ(fanout.asked.size(), 3u);
  fanout.asked[2](0);  // the last answer first: nothing may pass the first two
  EXPECT_TRUE(store.appended.empty());
  fanout.asked[0](1);
  EXPECT_EQ(texts(store.appended), (std::vector<std::string>{"1"}));
  fanout.asked[1](0);
  EXPECT_EQ(texts(store.appended), (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(store.appended[0].hooks, 0);
  EXPECT_EQ(store.appended[1].hooks, store::kHookOffline);
  EXPECT_EQ(store.appended[2].hooks, store::kHookOffline);
}

TEST(HookingStore, AnAnswerAfterTheStoreIsGoneIsDropped) {
  RecordingStore store;
  ScriptedFanout fanout(false);
  auto hooking = std::make_unique<HookingStore>(store, fanout, store::kHookOffline);
  hooking->append(from_alice("late"), {});
  hooking.reset();
  fanout.asked[0](0);
  EXPECT_TRUE(store.appended.empty());
}

}  // namespace
}  // namespace chatd::webhooks
