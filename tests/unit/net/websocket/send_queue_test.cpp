#include "net/websocket/send_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace chatd::net::websocket {
namespace {

using Status = SendQueue::Status;

chat::MessagePtr message(std::uint64_t seq) {
  auto made = std::make_shared<chat::Message>(chat::ChatKey::of("alice", "bob"));
  made->seq = seq;
  made->text = "m" + std::to_string(seq);
  return made;
}

std::shared_ptr<const std::string> frame_of(std::size_t bytes, char fill = 'x') {
  return std::make_shared<const std::string>(bytes, fill);
}

/// Plays the writer: takes every frame queued, as a socket that keeps up would.
std::vector<std::string> drain(SendQueue& queue) {
  std::vector<std::string> written;
  while (auto item = queue.front()) {
    if (item->close) {
      written.push_back("close " + std::to_string(item->close->code));
      break;
    }
    written.push_back(*item->frame);
    queue.pop(false);
  }
  return written;
}

/// A queue whose replay is over, as after a join with an empty chat.
std::unique_ptr<SendQueue> live_queue(std::size_t max_bytes) {
  auto queue = std::make_unique<SendQueue>(max_bytes);
  bool caught_up = false;
  queue->finish_replay(caught_up);
  return queue;
}

TEST(SendQueue, TheFirstPushStartsTheWriterAndLaterOnesJoinIt) {
  auto live = live_queue(1000);
  SendQueue& queue = *live;
  EXPECT_TRUE(queue.reply("a").start_writer);
  const auto second = queue.reply("b");
  EXPECT_EQ(second.status, Status::queued);
  EXPECT_FALSE(second.start_writer);
  EXPECT_EQ(drain(queue), (std::vector<std::string>{"a", "b"}));
  // The emptied queue made the writer idle: the next push starts it again.
  EXPECT_TRUE(queue.reply("c").start_writer);
}

TEST(SendQueue, EveryKindOfFrameCountsAgainstOneBound) {
  auto live = live_queue(100);
  SendQueue& queue = *live;
  queue.open_events();
  ASSERT_EQ(queue.reply(frame_of(40)).status, Status::queued);
  ASSERT_EQ(queue.notify(frame_of(40)).status, Status::queued);
  EXPECT_EQ(queue.queued_bytes(), 80u);
  EXPECT_EQ(queue.room(), 20u);
  // An event past the bound is dropped and the connection goes on.
  EXPECT_EQ(queue.notify(frame_of(30)).status, Status::dropped);
  EXPECT_FALSE(queue.closing());
  // A live message past it closes the connection as too slow.
  const auto result = queue.deliver(message(1), frame_of(30));
  EXPECT_EQ(result.status, Status::too_slow);
  EXPECT_TRUE(queue.closing());
  EXPECT_EQ(queue.close_code(), 1008);
}

TEST(SendQueue, AReplyPastTheBoundClosesAsTooSlowKeepingTheFrameBeingWritten) {
  auto live = live_queue(100);
  SendQueue& queue = *live;
  ASSERT_TRUE(queue.reply(frame_of(60, 'a')).start_writer);
  ASSERT_TRUE(queue.front().has_value());  // the writer holds the first frame
  ASSERT_EQ(queue.reply(frame_of(30, 'b')).status, Status::queued);
  EXPECT_EQ(queue.reply(frame_of(30, 'c')).status, Status::too_slow);
  // The frame being written stays; the one not started is dropped; the close follows.
  EXPECT_EQ(queue.queued_bytes(), 60u);
  queue.pop(false);
  const auto close = queue.front();
  ASSERT_TRUE(close && close->close);
  EXPECT_EQ(close->close->code, 1008);
  EXPECT_EQ(close->close->reason, "receiver too slow");
  // Nothing is taken once closing.
  EXPECT_EQ(queue.reply("late").status, Status::skipped);
  EXPECT_EQ(queue.deliver(message(9), frame_of(1)).status, Status::skipped);
}

TEST(SendQueue, TheWriterTakesWhatIsQueuedAtOnceUpToItsLimitsAndTheCloseAlone) {
  auto live = live_queue(10'000);
  SendQueue& queue = *live;
  for (char fill : {'a', 'b', 'c', 'd', 'e'}) queue.reply(frame_of(100, fill));
  SendQueue::Batch batch;
  ASSERT_TRUE(queue.take(batch, 3, 10'000));
  ASSERT_EQ(batch.frames.size(), 3u);  // at most 3 frames
  EXPECT_EQ(batch.frames[2]->front(), 'c');
  std::vector<SendQueue::Clock::time_point> read_at;
  queue.pop(false, &read_at);
  EXPECT_TRUE(read_at.empty()) << "replies carry no read time";
  EXPECT_EQ(queue.queued_bytes(), 200u);
  // At most 150 bytes: one frame of 100, however many are queued.
  ASSERT_TRUE(queue.take(batch, 32, 150));
  ASSERT_EQ(batch.frames.size(), 1u);
  EXPECT_EQ(batch.frames[0]->front(), 'd');
  // Past the bound, the frames taken stay (they are being written); the rest
  // go, and the close follows on its own.
  EXPECT_EQ(queue.reply(frame_of(9'900)).status, Status::too_slow);
  EXPECT_EQ(queue.queued_bytes(), 100u);
  queue.pop(false);
  ASSERT_TRUE(queue.take(batch, 32, 10'000));
  EXPECT_TRUE(batch.frames.empty());
  ASSERT_TRUE(batch.close.has_value());
  EXPECT_EQ(batch.close->code, 1008);
  // A frame alone bigger than the byte limit is still taken.
  auto other = live_queue(10'000);
  other->reply(frame_of(5'000));
  ASSERT_TRUE(other->take(batch, 32, 100));
  EXPECT_EQ(batch.frames.size(), 1u);
  other->pop(false);
  EXPECT_FALSE(other->take(batch, 32, 100)) << "empty: the writer goes idle";
  EXPECT_TRUE(other->reply("next").start_writer);
}

TEST(SendQueue, ABatchGivesTheReadTimeOfEachLiveMessage) {
  auto live = live_queue(10'000);
  SendQueue& queue = *live;
  for (std::uint64_t seq = 1; seq <= 3; ++seq) {
    auto m = std::make_shared<chat::Message>(*message(seq));
    m->received_at = SendQueue::Clock::now();
    queue.deliver(m, frame_of(10));
  }
  queue.reply("an ack");
  SendQueue::Batch batch;
  ASSERT_TRUE(queue.take(batch, 32, 10'000));
  EXPECT_EQ(batch.frames.size(), 4u);
  std::vector<SendQueue::Clock::time_point> read_at;
  queue.pop(false, &read_at);
  EXPECT_EQ(read_at.size(), 3u);
  EXPECT_EQ(queue.queued_bytes(), 0u);
}

TEST(SendQueue, EventsWaitForTheHello) {
  auto live = live_queue(1000);
  SendQueue& queue = *live;
  EXPECT_EQ(queue.notify(frame_of(5)).status, Status::skipped);
  queue.open_events();
  EXPECT_EQ(queue.notify(frame_of(5)).status, Status::queued);
}

TEST(SendQueue, LiveMessagesDuringTheReplayFollowItWithoutDoubles) {
  SendQueue queue(10'000);
  // Committed after the join: buffered while the replay reads the store.
  ASSERT_EQ(queue.deliver(message(3), std::make_shared<const std::string>("live3")).status,
            Status::queued);
  ASSERT_EQ(queue.deliver(message(4), std::make_shared<const std::string>("live4")).status,
            Status::queued);
  EXPECT_TRUE(drain(queue).empty());  // nothing live before the history
  // The replay read 1..3 from the store (3 is in both).
  for (std::uint64_t seq = 1; seq <= 3; ++seq) {
    ASSERT_EQ(queue.paced(std::make_shared<const std::string>("stored" + std::to_string(seq)), seq)
                  .status,
              Status::queued);
  }
  bool caught_up = false;
  queue.finish_replay(caught_up);
  EXPECT_TRUE(caught_up);
  EXPECT_EQ(drain(queue), (std::vector<std::string>{"stored1", "stored2", "stored3", "live4"}));
  // From now on a message already sent is skipped, a new one is queued.
  EXPECT_EQ(queue.deliver(message(4), frame_of(1)).status, Status::skipped);
  EXPECT_EQ(queue.deliver(message(5), frame_of(1)).status, Status::queued);
  EXPECT_EQ(queue.last_seq_sent(), 5u);
}

TEST(SendQueue, AResumeSendsNothingTheClientAlreadyHas) {
  SendQueue queue(10'000);
  // Committed before the client's `after` but delivered after its join.
  queue.deliver(message(7), std::make_shared<const std::string>("live7"));
  queue.deliver(message(8), std::make_shared<const std::string>("live8"));
  queue.deliver(message(9), std::make_shared<const std::string>("live9"));
  queue.replay_from(8);  // the client resumes after 8; the store has nothing later yet
  bool caught_up = false;
  queue.finish_replay(caught_up);
  EXPECT_TRUE(caught_up);
  EXPECT_EQ(drain(queue), (std::vector<std::string>{"live9"}));
}

TEST(SendQueue, PacedFramesWaitForRoomInsteadOfClosing) {
  SendQueue queue(100);
  ASSERT_EQ(queue.paced(frame_of(70), 1).status, Status::queued);
  ASSERT_TRUE(queue.front().has_value());
  EXPECT_EQ(queue.paced(frame_of(70), 2).status, Status::no_room);
  EXPECT_FALSE(queue.closing());
  EXPECT_FALSE(queue.wait_for_room(70));
  // The writer frees the room and says the waiter may go on.
  EXPECT_TRUE(queue.pop(false).wake);
  EXPECT_EQ(queue.paced(frame_of(70), 2).status, Status::queued);
}

TEST(SendQueue, AFrameLargerThanTheBoundIsPacedWhenTheQueueIsEmpty) {
  SendQueue queue(100);
  EXPECT_TRUE(queue.wait_for_room(500));  // asks for at most the bound
  EXPECT_EQ(queue.paced(frame_of(500), 1).status, Status::queued);
  EXPECT_EQ(queue.paced(frame_of(10), 2).status, Status::no_room);
}

TEST(SendQueue, BufferedLiveMessagesGiveWayToTheReplayAndAreReadFromTheStore) {
  SendQueue queue(100);
  // A busy chat fills the replay buffer while nothing is being written.
  ASSERT_EQ(queue.deliver(message(10), frame_of(60)).status, Status::queued);
  EXPECT_EQ(queue.room(), 40u);
  // The replay needs room: the buffer gives way instead of a wait without end.
  EXPECT_TRUE(queue.wait_for_room(50));
  EXPECT_EQ(queue.queued_bytes(), 0u);
  // Messages arriving meanwhile are not buffered either: they are in the store.
  EXPECT_EQ(queue.deliver(message(11), frame_of(10)).status, Status::skipped);
  ASSERT_EQ(queue.paced(frame_of(10), 9).status, Status::queued);
  bool caught_up = true;
  queue.finish_replay(caught_up);
  EXPECT_FALSE(caught_up);  // read on from the store after seq 9
  EXPECT_EQ(queue.last_seq_sent(), 9u);
  // Buffered again from now on.
  EXPECT_EQ(queue.deliver(message(12), frame_of(10)).status, Status::queued);
  ASSERT_EQ(queue.paced(frame_of(10), 10).status, Status::queued);
  ASSERT_EQ(queue.paced(frame_of(10), 11).status, Status::queued);
  queue.finish_replay(caught_up);
  EXPECT_TRUE(caught_up);
  EXPECT_EQ(queue.last_seq_sent(), 12u);
}

TEST(SendQueue, AFailedWriteDropsEverythingAndWakesTheWaiter) {
  auto live = live_queue(100);
  SendQueue& queue = *live;
  ASSERT_TRUE(queue.reply(frame_of(60)).start_writer);
  ASSERT_TRUE(queue.front().has_value());
  ASSERT_EQ(queue.reply(frame_of(30)).status, Status::queued);
  EXPECT_FALSE(queue.wait_for_room(80));
  EXPECT_TRUE(queue.pop(true).wake);
  EXPECT_TRUE(queue.closing());
  EXPECT_EQ(queue.queued_bytes(), 0u);
  EXPECT_FALSE(queue.front().has_value());
}

TEST(SendQueue, TheBytesOfEveryQueueAddUpInOneGauge) {
  metrics::Registry registry;
  metrics::Gauge& total = registry.gauge("queued", "bytes");
  {
    SendQueue first(1000, &total);
    SendQueue second(1000, &total);
    first.deliver(message(1), frame_of(100));  // buffered during the replay
    second.paced(frame_of(50), 1);
    EXPECT_EQ(total.value(), 150);
    bool caught_up = false;
    first.finish_replay(caught_up);
    ASSERT_TRUE(first.front().has_value());
    first.pop(false);
    EXPECT_EQ(total.value(), 50);
  }
  EXPECT_EQ(total.value(), 0);  // a queue destroyed with frames gives its bytes back
}

TEST(SendQueue, ACloseReasonIsCutToWhatACloseFrameHolds) {
  auto live = live_queue(100);
  SendQueue& queue = *live;
  queue.close(4404, std::string(300, 'r'));
  const auto item = queue.front();
  ASSERT_TRUE(item && item->close);
  EXPECT_EQ(item->close->reason.size(), 123u);
  EXPECT_EQ(queue.close_code(), 4404);
}

TEST(SendQueue, AReceiptNamesAtMostWhatTheClientWasSentOrAcked) {
  auto live = live_queue(1000);
  SendQueue& queue = *live;
  queue.deliver(message(3), frame_of(1));
  queue.acked(7);
  EXPECT_EQ(queue.last_seq_seen(), 7u);
  queue.deliver(message(8), frame_of(1));
  EXPECT_EQ(queue.last_seq_seen(), 8u);
}

// Deliveries from a commit thread and events from a fan-out thread race
// with the replay, the writer and replies on the strand; run under
// ThreadSanitizer by scripts/test. The strand plays the session: it replays
// from a "store" (every seq committed so far), reads on when the buffered
// live messages gave way, then writes. Every message is written once, in seq
// order, with no gap, unless the queue closed as too slow (then a gapless
// start).
TEST(SendQueueConcurrency, DeliveriesEventsTheReplayAndTheWriterRace) {
  SendQueue queue(64 * 1024);
  constexpr std::uint64_t kMessages = 20'000;
  std::atomic<std::uint64_t> committed{0};
  std::atomic<bool> all_delivered{false};  // set after the last deliver() returned
  auto message_frame = [](std::uint64_t seq) {
    return std::make_shared<const std::string>("m" + std::to_string(seq));
  };
  std::thread commit([&] {
    for (std::uint64_t seq = 1; seq <= kMessages; ++seq) {
      committed.store(seq);  // in the store before it is delivered
      queue.deliver(message(seq), message_frame(seq));
    }
    all_delivered.store(true);
  });
  std::thread events([&] {
    for (int i = 0; i < 5'000; ++i) queue.notify(frame_of(8, 'e'));
  });
  std::vector<std::uint64_t> written;
  bool closed = false;
  auto write_one = [&]() -> bool {  // false when nothing is queued
    auto item = queue.front();
    if (!item) return false;
    if (item->close) {
      closed = true;
      return false;
    }
    if ((*item->frame)[0] == 'm') written.push_back(std::stoull(item->frame->substr(1)));
    queue.pop(false);
    return true;
  };
  std::thread strand([&] {
    std::uint64_t cursor = 0;
    for (bool caught_up = false; !caught_up && !closed;) {
      queue.replay_from(cursor);
      const std::uint64_t upto = committed.load();
      for (std::uint64_t seq = cursor + 1; seq <= upto && !closed; ++seq) {
        while (queue.paced(message_frame(seq), seq).status == SendQueue::Status::no_room) {
          if (!write_one() && !queue.wait_for_room(16)) std::this_thread::yield();
        }
      }
      cursor = std::max(upto, queue.last_seq_sent());
      queue.finish_replay(caught_up);
    }
    queue.open_events();
    for (int i = 0; i < 1'000; ++i) queue.reply("ack");
    // `committed` runs ahead of deliver(), so only all_delivered says the last
    // message is in the queue (or was read by the replay).
    while (!closed && (!all_delivered.load() || queue.front())) {
      if (!write_one()) std::this_thread::yield();
    }
  });
  commit.join();
  events.join();
  strand.join();
  std::vector<std::uint64_t> expected(written.size());
  std::iota(expected.begin(), expected.end(), 1);
  EXPECT_EQ(written, expected);  // gapless, once each, in order
  if (!closed) {
    EXPECT_EQ(written.size(), kMessages);
  }
}

}  // namespace
}  // namespace chatd::net::websocket
