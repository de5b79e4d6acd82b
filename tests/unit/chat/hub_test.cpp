#include "chat/hub.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "chat/frames.h"

namespace chatd::chat {
namespace {

/// A connection without a socket: records what the hub hands it.
class RecordingSubscriber final : public Subscriber {
 public:
  struct Delivery {
    std::uint64_t seq;
    std::string text;
    std::shared_ptr<const std::string> frame;
  };

  RecordingSubscriber(ConnectionId id, std::string user) : id_(id), user_(std::move(user)) {}

  ConnectionId connection_id() const override { return id_; }
  const std::string& user() const override { return user_; }

  void deliver(const MessagePtr& message,
               const std::shared_ptr<const std::string>& frame) override {
    std::lock_guard lock(mutex_);
    deliveries_.push_back(Delivery{message->seq, message->text, frame});
  }

  void notify(const std::shared_ptr<const std::string>& frame) override {
    std::lock_guard lock(mutex_);
    events_.push_back(*frame);
  }

  std::vector<std::string> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }

  std::vector<Delivery> deliveries() const {
    std::lock_guard lock(mutex_);
    return deliveries_;
  }

  std::vector<std::uint64_t> seqs() const {
    std::lock_guard lock(mutex_);
    std::vector<std::uint64_t> result;
    for (const auto& delivery : deliveries_) result.push_back(delivery.seq);
    return result;
  }

 private:
  const ConnectionId id_;
  const std::string user_;
  mutable std::mutex mutex_;
  std::vector<Delivery> deliveries_;
  std::vector<std::string> events_;
};

MessagePtr make_message(const ChatKey& chat, std::uint64_t seq, std::string sender,
                        ConnectionId origin, std::string text = "hello") {
  auto message = std::make_shared<Message>(chat);
  message->seq = seq;
  message->id = "000000000000000000000000";
  message->sender = std::move(sender);
  message->text = std::move(text);
  message->timestamp_ms = 1764044684123;
  message->origin = origin;
  return message;
}

const ChatKey kAliceBob = ChatKey::of("alice", "bob");
const ChatKey kAliceCarol = ChatKey::of("alice", "carol");

TEST(Hub, EmptyHub) {
  Hub hub;
  EXPECT_EQ(hub.active_chats(), 0u);
  EXPECT_EQ(hub.connections(), 0u);
  EXPECT_EQ(hub.connections_of(kAliceBob, "alice"), 0u);
  hub.deliver(make_message(kAliceBob, 1, "alice", 0));  // nobody there: no crash
  RecordingSubscriber stranger(1, "alice");
  hub.leave(kAliceBob, stranger);  // leaving a chat never joined is harmless
  EXPECT_EQ(hub.connections(), 0u);
}

TEST(Hub, DeliversToEveryConnectionExceptTheOrigin) {
  Hub hub;
  auto alice_phone = std::make_shared<RecordingSubscriber>(1, "alice");
  auto alice_laptop = std::make_shared<RecordingSubscriber>(2, "alice");
  auto bob = std::make_shared<RecordingSubscriber>(3, "bob");
  hub.join(kAliceBob, alice_phone);
  hub.join(kAliceBob, alice_laptop);
  hub.join(kAliceBob, bob);

  hub.deliver(make_message(kAliceBob, 1, "alice", /*origin=*/1, "from the phone"));

  EXPECT_TRUE(alice_phone->deliveries().empty()) << "the sending connection got an echo";
  ASSERT_EQ(alice_laptop->deliveries().size(), 1u) << "the sender's other device missed it";
  ASSERT_EQ(bob->deliveries().size(), 1u);
  EXPECT_EQ(bob->deliveries()[0].seq, 1u);
  EXPECT_EQ(bob->deliveries()[0].text, "from the phone");
  EXPECT_EQ(alice_laptop->deliveries()[0].text, "from the phone");
}

TEST(Hub, MessageWithoutLocalOriginReachesEveryone) {
  Hub hub;
  auto alice = std::make_shared<RecordingSubscriber>(1, "alice");
  auto bob = std::make_shared<RecordingSubscriber>(2, "bob");
  hub.join(kAliceBob, alice);
  hub.join(kAliceBob, bob);
  hub.deliver(make_message(kAliceBob, 1, "alice", /*origin=*/0));
  EXPECT_EQ(alice->seqs(), std::vector<std::uint64_t>{1});
  EXPECT_EQ(bob->seqs(), std::vector<std::uint64_t>{1});
}

TEST(Hub, AFillerReachesNobody) {
  Hub hub;
  auto alice = std::make_shared<RecordingSubscriber>(1, "alice");
  hub.join(kAliceBob, alice);
  auto filler = std::make_shared<Message>(*make_message(kAliceBob, 1, "", 0, ""));
  filler->kind = EntryKind::filler;
  hub.deliver(filler);
  hub.deliver(make_message(kAliceBob, 2, "bob", 0));
  EXPECT_EQ(alice->seqs(), std::vector<std::uint64_t>{2}) << "a filler only holds its seq";
}

TEST(Hub, OtherChatsAreNotReached) {
  Hub hub;
  auto bob = std::make_shared<RecordingSubscriber>(1, "bob");
  auto carol = std::make_shared<RecordingSubscriber>(2, "carol");
  auto alice_with_carol = std::make_shared<RecordingSubscriber>(3, "alice");
  hub.join(kAliceBob, bob);
  hub.join(kAliceCarol, carol);
  hub.join(kAliceCarol, alice_with_carol);

  hub.deliver(make_message(kAliceBob, 1, "alice", 99));

  EXPECT_EQ(bob->seqs(), std::vector<std::uint64_t>{1});
  EXPECT_TRUE(carol->deliveries().empty());
  EXPECT_TRUE(alice_with_carol->deliveries().empty());
}

TEST(Hub, FrameIsTheSerializedMessageSharedByEveryReceiver) {
  Hub hub;
  std::vector<std::shared_ptr<RecordingSubscriber>> receivers;
  for (ConnectionId id = 1; id <= 5; ++id) {
    receivers.push_back(std::make_shared<RecordingSubscriber>(id, id % 2 ? "alice" : "bob"));
    hub.join(kAliceBob, receivers.back());
  }
  const MessagePtr message = make_message(kAliceBob, 7, "alice", 1, "shared");
  hub.deliver(message);

  const std::string expected = message_frame(*message);
  const std::string* first_frame = nullptr;
  for (const auto& receiver : receivers) {
    const auto deliveries = receiver->deliveries();
    if (receiver->connection_id() == 1) {
      EXPECT_TRUE(deliveries.empty());
      continue;
    }
    ASSERT_EQ(deliveries.size(), 1u);
    ASSERT_NE(deliveries[0].frame, nullptr);
    EXPECT_EQ(*deliveries[0].frame, expected);
    if (first_frame == nullptr) first_frame = deliveries[0].frame.get();
    EXPECT_EQ(deliveries[0].frame.get(), first_frame) << "frame serialized more than once";
  }
  EXPECT_NE(first_frame, nullptr);
}

TEST(Hub, LeaveStopsDeliveryToThatConnectionOnly) {
  Hub hub;
  auto alice = std::make_shared<RecordingSubscriber>(1, "alice");
  auto bob = std::make_shared<RecordingSubscriber>(2, "bob");
  hub.join(kAliceBob, alice);
  hub.join(kAliceBob, bob);
  hub.deliver(make_message(kAliceBob, 1, "carol", 0));
  hub.leave(kAliceBob, *alice);
  hub.deliver(make_message(kAliceBob, 2, "carol", 0));

  EXPECT_EQ(alice->seqs(), std::vector<std::uint64_t>{1});
  EXPECT_EQ((bob->seqs()), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(hub.connections(), 1u);
  EXPECT_EQ(hub.active_chats(), 1u);

  hub.leave(kAliceBob, *bob);
  EXPECT_EQ(hub.connections(), 0u);
  EXPECT_EQ(hub.active_chats(), 0u);
}

TEST(Hub, LeavingTheWrongChatKeepsTheConnection) {
  Hub hub;
  auto bob = std::make_shared<RecordingSubscriber>(1, "bob");
  hub.join(kAliceBob, bob);
  hub.leave(kAliceCarol, *bob);
  hub.deliver(make_message(kAliceBob, 1, "alice", 0));
  EXPECT_EQ(bob->seqs(), std::vector<std::uint64_t>{1});
}

TEST(Hub, DestroyedSubscriberWithoutLeaveIsSkipped) {
  Hub hub;
  auto gone = std::make_shared<RecordingSubscriber>(1, "alice");
  auto bob = std::make_shared<RecordingSubscriber>(2, "bob");
  hub.join(kAliceBob, gone);
  hub.join(kAliceBob, bob);
  gone.reset();  // the session ended without leaving

  hub.deliver(make_message(kAliceBob, 1, "carol", 0));
  EXPECT_EQ(bob->seqs(), std::vector<std::uint64_t>{1});
  EXPECT_EQ(hub.connections_of(kAliceBob, "alice"), 0u);
  EXPECT_EQ(hub.connections_of(kAliceBob, "bob"), 1u);

  // The one remaining leave clears the chat, expired entries included.
  hub.leave(kAliceBob, *bob);
  EXPECT_EQ(hub.connections(), 0u);
  EXPECT_EQ(hub.active_chats(), 0u);
}

TEST(Hub, CountsConnectionsPerUserAndChat) {
  Hub hub;
  auto alice1 = std::make_shared<RecordingSubscriber>(1, "alice");
  auto alice2 = std::make_shared<RecordingSubscriber>(2, "alice");
  auto bob = std::make_shared<RecordingSubscriber>(3, "bob");
  auto alice3 = std::make_shared<RecordingSubscriber>(4, "alice");
  auto carol = std::make_shared<RecordingSubscriber>(5, "carol");
  hub.join(kAliceBob, alice1);
  hub.join(kAliceBob, alice2);
  hub.join(kAliceBob, bob);
  hub.join(kAliceCarol, alice3);
  hub.join(kAliceCarol, carol);

  EXPECT_EQ(hub.connections_of(kAliceBob, "alice"), 2u);
  EXPECT_EQ(hub.connections_of(kAliceBob, "bob"), 1u);
  EXPECT_EQ(hub.connections_of(kAliceBob, "carol"), 0u);
  EXPECT_EQ(hub.connections_of(kAliceCarol, "alice"), 1u);
  EXPECT_EQ(hub.connections_of(ChatKey::of("bob", "alice"), "alice"), 2u);
  EXPECT_EQ(hub.active_chats(), 2u);
  EXPECT_EQ(hub.connections(), 5u);

  hub.leave(kAliceBob, *alice1);
  EXPECT_EQ(hub.connections_of(kAliceBob, "alice"), 1u);
  EXPECT_EQ(hub.connections(), 4u);
  hub.leave(kAliceCarol, *alice3);
  hub.leave(kAliceCarol, *carol);
  EXPECT_EQ(hub.active_chats(), 1u);
  EXPECT_EQ(hub.connections(), 2u);
}

TEST(Hub, JoinAndLeaveSayHowManyConnectionsTheUserHasInTheChat) {
  Hub hub;
  auto alice1 = std::make_shared<RecordingSubscriber>(1, "alice");
  auto alice2 = std::make_shared<RecordingSubscriber>(2, "alice");
  auto bob = std::make_shared<RecordingSubscriber>(3, "bob");
  auto alice_elsewhere = std::make_shared<RecordingSubscriber>(4, "alice");
  EXPECT_EQ(hub.join(kAliceBob, alice1), 1u);  // alice came online
  EXPECT_EQ(hub.join(kAliceBob, bob), 1u);
  EXPECT_EQ(hub.join(kAliceCarol, alice_elsewhere), 1u);  // another chat counts apart
  EXPECT_EQ(hub.join(kAliceBob, alice2), 2u);
  EXPECT_EQ(hub.leave(kAliceBob, *alice1), 1u);
  EXPECT_EQ(hub.leave(kAliceBob, *alice2), 0u);  // alice went offline
  EXPECT_EQ(hub.leave(kAliceBob, *bob), 0u);
  EXPECT_EQ(hub.leave(kAliceBob, *bob), 0u);  // leaving twice is harmless
}

TEST(Hub, EventsReachEveryConnectionOfTheChatButTheOrigin) {
  Hub hub;
  auto alice1 = std::make_shared<RecordingSubscriber>(1, "alice");
  auto alice2 = std::make_shared<RecordingSubscriber>(2, "alice");
  auto bob = std::make_shared<RecordingSubscriber>(3, "bob");
  auto carol = std::make_shared<RecordingSubscriber>(4, "carol");
  hub.join(kAliceBob, alice1);
  hub.join(kAliceBob, alice2);
  hub.join(kAliceBob, bob);
  hub.join(kAliceCarol, carol);
  hub.notify(kAliceBob, 1, std::make_shared<const std::string>("typing"));
  EXPECT_TRUE(alice1->events().empty());
  EXPECT_EQ(alice2->events(), std::vector<std::string>{"typing"});
  EXPECT_EQ(bob->events(), std::vector<std::string>{"typing"});
  EXPECT_TRUE(carol->events().empty());
  EXPECT_TRUE(bob->deliveries().empty()) << "an event is not a message";
}

TEST(Hub, ManyChatsAreCountedAcrossShards) {
  Hub hub;
  std::vector<std::shared_ptr<RecordingSubscriber>> subscribers;
  for (int i = 0; i < 300; ++i) {
    subscribers.push_back(std::make_shared<RecordingSubscriber>(i + 1, "user" + std::to_string(i)));
    hub.join(ChatKey::of("user" + std::to_string(i), "hub"), subscribers.back());
  }
  EXPECT_EQ(hub.active_chats(), 300u);
  EXPECT_EQ(hub.connections(), 300u);
  hub.deliver(make_message(ChatKey::of("user123", "hub"), 1, "hub", 0));
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ(subscribers[i]->deliveries().size(), i == 123 ? 1u : 0u) << i;
  }
}

TEST(Hub, ConcurrentJoinLeaveDoesNotDisturbDelivery) {
  constexpr std::uint64_t kMessages = 10'000;
  Hub hub;
  auto steady = std::make_shared<RecordingSubscriber>(1, "bob");
  hub.join(kAliceBob, steady);

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> churn_rounds{0};
  std::vector<std::thread> churners;
  for (int t = 0; t < 4; ++t) {
    churners.emplace_back([&, t] {
      const ChatKey own = ChatKey::of("churn" + std::to_string(t), "x");
      ConnectionId next_id = 1000 + static_cast<ConnectionId>(t) * 1'000'000;
      while (!stop.load()) {
        // Transient connections both in the busy chat and in a chat of their own.
        auto in_busy = std::make_shared<RecordingSubscriber>(next_id++, "alice");
        auto in_own = std::make_shared<RecordingSubscriber>(next_id++, "x");
        hub.join(kAliceBob, in_busy);
        hub.join(own, in_own);
        (void)hub.connections_of(kAliceBob, "alice");
        (void)hub.active_chats();
        hub.leave(own, *in_own);
        if (next_id % 3 == 0) {
          in_busy.reset();  // sometimes a session dies without leaving
        } else {
          hub.leave(kAliceBob, *in_busy);
        }
        churn_rounds.fetch_add(1);
      }
    });
  }

  std::thread deliverer([&] {
    for (std::uint64_t seq = 1; seq <= kMessages; ++seq) {
      hub.deliver(make_message(kAliceBob, seq, "alice", /*origin=*/0));
    }
  });
  deliverer.join();
  stop.store(true);
  for (auto& churner : churners) churner.join();

  const auto seqs = steady->seqs();
  ASSERT_EQ(seqs.size(), kMessages);
  for (std::uint64_t i = 0; i < kMessages; ++i) {
    ASSERT_EQ(seqs[i], i + 1) << "out of order or duplicated at position " << i;
  }
  EXPECT_GT(churn_rounds.load(), 0u);
  EXPECT_EQ(hub.connections_of(kAliceBob, "bob"), 1u);
  EXPECT_EQ(hub.connections_of(kAliceBob, "alice"), 0u);
}

}  // namespace
}  // namespace chatd::chat
