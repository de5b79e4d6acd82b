#include "store/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../store_test_support.h"

namespace chatd::store::sqlite {
namespace {
using namespace chatd::store::test_support;

class SqliteStoreTest : public StoreTest {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("chatd_sqlite_" + std::to_string(::getpid()) + "_" +
            std::to_string(counter.fetch_add(1)) + "_" + test->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }

  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  SqliteOptions options(const std::string& file = "chat.db") const {
    SqliteOptions result;
    result.path = (dir_ / file).string();
    return result;
  }

  std::filesystem::path dir_;
};

// ---------------------------------------------------------------------------
// Appends
// ---------------------------------------------------------------------------

TEST_F(SqliteStoreTest, AppendAssignsSequencePerChat) {
  CommitLog log;
  SqliteStore store(options(), log.listener());

  const std::int64_t before = chat::now_ms();
  const AppendResult first = append(store, pending(kAliceBob, "alice", "one", {}, 17));
  const std::int64_t after_first = chat::now_ms();
  ASSERT_EQ(first.error, StoreError::none);
  ASSERT_NE(first.message, nullptr);
  EXPECT_FALSE(first.duplicate);
  EXPECT_EQ(first.message->seq, 1u);
  EXPECT_EQ(first.message->chat, kAliceBob);
  EXPECT_EQ(first.message->sender, "alice");
  EXPECT_EQ(first.message->text, "one");
  EXPECT_EQ(first.message->origin, 17u) << "the origin connection must survive the commit";
  EXPECT_EQ(first.message->id.size(), 24u);
  EXPECT_GE(first.message->timestamp_ms, before);
  EXPECT_LE(first.message->timestamp_ms, after_first);

  EXPECT_EQ(append(store, kAliceBob, "bob", "two").message->seq, 2u);
  EXPECT_EQ(append(store, kAliceCarol, "carol", "other chat").message->seq, 1u);
  EXPECT_EQ(append(store, ChatKey::of("bob", "alice"), "alice", "three").message->seq, 3u);
  EXPECT_EQ(append(store, kAliceCarol, "alice", "other chat 2").message->seq, 2u);

  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, 3));
  EXPECT_EQ(log.seqs_of_chat(kAliceCarol), range(1, 2));
  EXPECT_TRUE(store.ready());
}

TEST_F(SqliteStoreTest, ListenerHearsOfEachCommitBeforeItsSender) {
  CommitLog log;
  SqliteStore store(options(), log.listener());

  constexpr std::size_t kCount = 200;
  struct Outcome {
    std::mutex mutex;
    std::condition_variable done;
    std::map<std::string, std::uint64_t> handler_tick_by_id;
    std::size_t completed = 0;
    std::size_t failures = 0;
  };
  auto outcome = std::make_shared<Outcome>();
  for (std::size_t i = 0; i < kCount; ++i) {
    const ChatKey& chat = i % 3 == 0 ? kAliceCarol : kAliceBob;
    async_append(store, pending(chat, "alice", "m" + std::to_string(i)),
                 asio::bind_executor(io_, [outcome, &log](AppendResult result) {
                   const std::uint64_t tick = log.clock.fetch_add(1);
                   std::lock_guard lock(outcome->mutex);
                   if (result.error == StoreError::none && result.message) {
                     outcome->handler_tick_by_id[result.message->id] = tick;
                   } else {
                     ++outcome->failures;
                   }
                   ++outcome->completed;
                   outcome->done.notify_all();
                 }));
  }
  {
    std::unique_lock lock(outcome->mutex);
    ASSERT_TRUE(
        outcome->done.wait_for(lock, kTimeout, [&] { return outcome->completed == kCount; }));
    EXPECT_EQ(outcome->failures, 0u);
  }

  // Per chat, the listener saw the messages once each, in sequence order.
  const auto bob_seqs = log.seqs_of_chat(kAliceBob);
  const auto carol_seqs = log.seqs_of_chat(kAliceCarol);
  EXPECT_EQ(carol_seqs, range(1, (kCount + 2) / 3));
  EXPECT_EQ(bob_seqs, range(1, kCount - (kCount + 2) / 3));

  std::lock_guard lock(outcome->mutex);
  std::lock_guard log_lock(log.mutex);
  ASSERT_EQ(log.tick_by_id.size(), kCount);
  for (const auto& [id, handler_tick] : outcome->handler_tick_by_id) {
    const auto seen = log.tick_by_id.find(id);
    ASSERT_NE(seen, log.tick_by_id.end()) << "sender told of a message the listener never saw";
    EXPECT_LT(seen->second, handler_tick) << "sender told before the listener for " << id;
  }
}

TEST_F(SqliteStoreTest, AppendsFromOneSourceKeepTheirOrder) {
  SqliteStore store(options(), {});
  auto completions = std::make_shared<Completions>();
  constexpr std::size_t kCount = 300;
  for (std::size_t i = 0; i < kCount; ++i) {
    append_async(store, pending(kAliceBob, "alice", std::to_string(i)), completions, i);
  }
  ASSERT_TRUE(completions->wait_for(kCount));
  const auto results = completions->results();
  for (std::size_t i = 0; i < kCount; ++i) {
    const AppendResult& result = results.at(i);
    ASSERT_EQ(result.error, StoreError::none);
    EXPECT_EQ(result.message->seq, i + 1);
    EXPECT_EQ(result.message->text, std::to_string(i));
  }
}

// ---------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------

TEST_F(SqliteStoreTest, HistoryPages) {
  SqliteStore store(options(), {});
  for (int i = 1; i <= 10; ++i) {
    ASSERT_EQ(append(store, kAliceBob, i % 2 ? "alice" : "bob", "msg " + std::to_string(i)).error,
              StoreError::none);
  }
  ASSERT_EQ(append(store, kAliceCarol, "carol", "elsewhere").error, StoreError::none);

  // The newest page, oldest first.
  const HistoryPage page = newest(store, kAliceBob, 4);
  EXPECT_EQ(page.error, StoreError::none);
  EXPECT_EQ(seqs_of(page.messages), range(7, 10));
  EXPECT_TRUE(page.has_more);
  ASSERT_EQ(page.messages.size(), 4u);
  EXPECT_EQ(page.messages[0]->text, "msg 7");
  EXPECT_EQ(page.messages[0]->sender, "alice");
  EXPECT_EQ(page.messages[3]->text, "msg 10");
  EXPECT_EQ(page.messages[3]->sender, "bob");
  EXPECT_EQ(page.messages[0]->chat, kAliceBob);

  // Paging back with before_seq.
  const HistoryPage older = newest(store, kAliceBob, 4, 7);
  EXPECT_EQ(seqs_of(older.messages), range(3, 6));
  EXPECT_TRUE(older.has_more);
  const HistoryPage oldest = newest(store, kAliceBob, 4, 3);
  EXPECT_EQ(seqs_of(oldest.messages), range(1, 2));
  EXPECT_FALSE(oldest.has_more);

  // A page that holds everything has nothing more.
  const HistoryPage all = newest(store, kAliceBob, 10);
  EXPECT_EQ(seqs_of(all.messages), range(1, 10));
  EXPECT_FALSE(all.has_more);
  EXPECT_EQ(seqs_of(newest(store, kAliceBob, 100).messages), range(1, 10));

  // Either order of the pair reads the same chat; other chats do not leak in.
  EXPECT_EQ(seqs_of(newest(store, ChatKey::of("bob", "alice"), 100).messages), range(1, 10));
  const HistoryPage carol = newest(store, kAliceCarol, 100);
  ASSERT_EQ(carol.messages.size(), 1u);
  EXPECT_EQ(carol.messages[0]->text, "elsewhere");
}

TEST_F(SqliteStoreTest, ResumeAfterSequence) {
  SqliteStore store(options(), {});
  for (int i = 1; i <= 10; ++i)
    ASSERT_EQ(append(store, kAliceBob, "alice", "m").error, StoreError::none);

  const HistoryPage first = after(store, kAliceBob, 5, 3);
  EXPECT_EQ(seqs_of(first.messages), range(6, 8));
  EXPECT_TRUE(first.has_more);
  const HistoryPage rest = after(store, kAliceBob, 8, 3);
  EXPECT_EQ(seqs_of(rest.messages), range(9, 10));
  EXPECT_FALSE(rest.has_more);
  const HistoryPage nothing = after(store, kAliceBob, 10, 3);
  EXPECT_TRUE(nothing.messages.empty());
  EXPECT_FALSE(nothing.has_more);
  EXPECT_EQ(seqs_of(after(store, kAliceBob, 0, 100).messages), range(1, 10));
}

TEST_F(SqliteStoreTest, HistoryOfAnUnknownChatIsEmpty) {
  SqliteStore store(options(), {});
  const HistoryPage page = newest(store, ChatKey::of("nobody", "nothing"), 100);
  EXPECT_EQ(page.error, StoreError::none);
  EXPECT_TRUE(page.messages.empty());
  EXPECT_FALSE(page.has_more);
}

TEST_F(SqliteStoreTest, HistorySeesEveryAcknowledgedMessage) {
  SqliteStore store(options(), {});
  for (int i = 1; i <= 50; ++i) {
    const AppendResult result = append(store, kAliceBob, "alice", std::to_string(i));
    ASSERT_EQ(result.error, StoreError::none);
    const HistoryPage page = newest(store, kAliceBob, 1);
    ASSERT_EQ(page.messages.size(), 1u);
    EXPECT_EQ(page.messages[0]->seq, result.message->seq);
    EXPECT_EQ(page.messages[0]->id, result.message->id);
  }
}

// ---------------------------------------------------------------------------
// Durability and exclusive access
// ---------------------------------------------------------------------------

TEST_F(SqliteStoreTest, DataSurvivesReopeningAndSequencesContinue) {
  std::vector<std::string> ids;
  {
    SqliteStore store(options(), {});
    for (int i = 1; i <= 3; ++i) {
      const AppendResult result =
          append(store, kAliceBob, "alice", "before restart " + std::to_string(i));
      ASSERT_EQ(result.error, StoreError::none);
      ids.push_back(result.message->id);
    }
    ASSERT_EQ(append(store, kAliceCarol, "carol", "c1").error, StoreError::none);
  }
  SqliteStore reopened(options(), {});
  const HistoryPage page = newest(reopened, kAliceBob, 100);
  ASSERT_EQ(seqs_of(page.messages), range(1, 3));
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(page.messages[i]->id, ids[i]);
    EXPECT_EQ(page.messages[i]->text, "before restart " + std::to_string(i + 1));
    EXPECT_EQ(page.messages[i]->sender, "alice");
  }

  const AppendResult next = append(reopened, kAliceBob, "bob", "after restart");
  ASSERT_EQ(next.error, StoreError::none);
  EXPECT_EQ(next.message->seq, 4u) << "a sequence number was reused after a restart";
  EXPECT_EQ(append(reopened, kAliceCarol, "alice", "c2").message->seq, 2u);
  EXPECT_EQ(seqs_of(newest(reopened, kAliceBob, 100).messages), range(1, 4));
}

TEST_F(SqliteStoreTest, DestroyingTheStoreCommitsWhatItAccepted) {
  constexpr std::size_t kCount = 300;
  auto completions = std::make_shared<Completions>();
  {
    SqliteStore store(options(), {});
    for (std::size_t i = 0; i < kCount; ++i) {
      append_async(store, pending(kAliceBob, "alice", std::to_string(i)), completions, i);
    }
  }  // destroyed with appends possibly still queued
  ASSERT_TRUE(completions->wait_for(kCount));
  for (const auto& [index, result] : completions->results()) {
    EXPECT_EQ(result.error, StoreError::none) << index;
  }
  SqliteStore reopened(options(), {});
  EXPECT_EQ(seqs_of(newest(reopened, kAliceBob, 1000).messages), range(1, kCount));
}

TEST_F(SqliteStoreTest, SecondStoreOnTheSamePathIsRefused) {
  {
    SqliteStore first(options(), {});
    try {
      SqliteStore second(options(), {});
      ADD_FAILURE() << "a second store opened a file that is in use";
    } catch (const SqliteError& error) {
      EXPECT_NE(std::string(error.what()).find("in use"), std::string::npos) << error.what();
      EXPECT_NE(std::string(error.what()).find(options().path), std::string::npos) << error.what();
    }
    // The refused attempt did not disturb the first store.
    EXPECT_EQ(append(first, kAliceBob, "alice", "still works").error, StoreError::none);
  }
  // Once the first store is gone the file can be opened again.
  SqliteStore again(options(), {});
  EXPECT_EQ(append(again, kAliceBob, "alice", "again").message->seq, 2u);
}

TEST_F(SqliteStoreTest, CreatesMissingDirectories) {
  SqliteOptions nested = options("not/yet/there/chat.db");
  ASSERT_FALSE(std::filesystem::exists(dir_ / "not"));
  SqliteStore store(nested, {});
  EXPECT_EQ(append(store, kAliceBob, "alice", "hi").error, StoreError::none);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "not/yet/there/chat.db"));
}

// ---------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------

TEST_F(SqliteStoreTest, RepeatedClientIdIsADuplicate) {
  CommitLog log;
  SqliteStore store(options(), log.listener());

  const AppendResult original = append(store, kAliceBob, "alice", "hello", "client-1");
  ASSERT_EQ(original.error, StoreError::none);
  EXPECT_FALSE(original.duplicate);
  ASSERT_EQ(log.messages().size(), 1u);

  // A retry, even with different text, returns the original.
  const AppendResult retry = append(store, kAliceBob, "alice", "hello (retry)", "client-1");
  ASSERT_EQ(retry.error, StoreError::none);
  ASSERT_NE(retry.message, nullptr);
  EXPECT_TRUE(retry.duplicate);
  EXPECT_EQ(retry.message->id, original.message->id);
  EXPECT_EQ(retry.message->seq, original.message->seq);
  EXPECT_EQ(retry.message->text, "hello");
  EXPECT_EQ(retry.message->client_id, "client-1");
  EXPECT_EQ(retry.message->timestamp_ms, original.message->timestamp_ms);
  EXPECT_EQ(log.messages().size(), 1u) << "the listener was told of a duplicate";

  // The same client id from the other user, or in another chat, is a new message.
  const AppendResult from_bob = append(store, kAliceBob, "bob", "hello", "client-1");
  EXPECT_FALSE(from_bob.duplicate);
  EXPECT_EQ(from_bob.message->seq, 2u);
  const AppendResult other_chat = append(store, kAliceCarol, "alice", "hello", "client-1");
  EXPECT_FALSE(other_chat.duplicate);
  EXPECT_EQ(other_chat.message->seq, 1u);
  // Messages without a client id are never duplicates of each other.
  EXPECT_FALSE(append(store, kAliceBob, "alice", "same").duplicate);
  EXPECT_FALSE(append(store, kAliceBob, "alice", "same").duplicate);

  EXPECT_EQ(seqs_of(newest(store, kAliceBob, 100).messages), range(1, 4));
  EXPECT_EQ(log.messages().size(), 5u);
}

TEST_F(SqliteStoreTest, DuplicateInTheSameBatchIsStoredOnce) {
  CommitLog log;
  SqliteStore store(options(), log.listener());
  auto completions = std::make_shared<Completions>();
  for (std::size_t i = 0; i < 5; ++i) {
    append_async(store, pending(kAliceBob, "alice", "burst", "dup-id"), completions, i);
  }
  ASSERT_TRUE(completions->wait_for(5));
  std::size_t originals = 0;
  for (const auto& [index, result] : completions->results()) {
    ASSERT_EQ(result.error, StoreError::none);
    EXPECT_EQ(result.message->seq, 1u);
    if (!result.duplicate) ++originals;
  }
  EXPECT_EQ(originals, 1u);
  EXPECT_EQ(log.messages().size(), 1u);
  EXPECT_EQ(seqs_of(newest(store, kAliceBob, 100).messages), range(1, 1));
}

TEST_F(SqliteStoreTest, ClientIdIsRememberedAcrossRestarts) {
  std::string id;
  {
    SqliteStore store(options(), {});
    id = append(store, kAliceBob, "alice", "hello", "c-restart").message->id;
  }
  CommitLog log;
  SqliteStore reopened(options(), log.listener());
  const AppendResult retry = append(reopened, kAliceBob, "alice", "hello", "c-restart");
  EXPECT_TRUE(retry.duplicate);
  EXPECT_EQ(retry.message->id, id);
  EXPECT_EQ(retry.message->seq, 1u);
  EXPECT_TRUE(log.messages().empty());
}

// ---------------------------------------------------------------------------
// Group commit, draining and back-pressure
// ---------------------------------------------------------------------------

// Checkpoints run on their own thread (no commit waits for their fsyncs) and
// keep the WAL short. SQLite's own checkpoint, inside a commit, would not
// have run at all for these few hundred pages.
TEST_F(SqliteStoreTest, CheckpointsCopyTheWalBackAndLetItStartOver) {
  constexpr std::size_t kCount = 300;
  constexpr std::uintmax_t kPage = 4096;
  SqliteOptions small = options();
  small.checkpoint_pages = 8;
  small.wal_limit_pages = 32;
  SqliteStore store(small, {});
  const std::string text(2000, 'x');
  for (std::size_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(append(store, kAliceBob, "alice", text).error, StoreError::none) << i;
  }
  // Together the messages fill kCount / 2 pages of the database file once
  // copied back from the WAL.
  const auto db_file = dir_ / "chat.db";
  const auto wal_file = dir_ / "chat.db-wal";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::filesystem::file_size(db_file) < kCount / 2 * kPage &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GE(std::filesystem::file_size(db_file), kCount / 2 * kPage)
      << "no checkpoint copied the WAL back";
  // Once the WAL has started over, commits write over its beginning and the
  // file stops growing.
  bool started_over = false;
  for (std::size_t i = 0; i < 2000 && !started_over; ++i) {
    const auto before = std::filesystem::file_size(wal_file);
    ASSERT_EQ(append(store, kAliceBob, "bob", "short").error, StoreError::none);
    started_over = std::filesystem::file_size(wal_file) == before;
  }
  EXPECT_TRUE(started_over) << "the WAL never started over";
  EXPECT_EQ(newest(store, kAliceBob, 1).messages.size(), 1u);
}

TEST_F(SqliteStoreTest, ConcurrentAppendsGetExactlyOneSequenceEach) {
  constexpr std::size_t kThreads = 4;
  constexpr std::size_t kPerThread = 1250;
  constexpr std::size_t kTotal = kThreads * kPerThread;
  CommitLog log;
  SqliteStore store(options(), log.listener());
  auto completions = std::make_shared<Completions>();

  std::vector<std::thread> senders;
  for (std::size_t t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (std::size_t i = 0; i < kPerThread; ++i) {
        const std::size_t index = t * kPerThread + i;
        append_async(store, pending(kAliceBob, t % 2 ? "alice" : "bob", std::to_string(index)),
                     completions, index);
      }
    });
  }
  for (auto& sender : senders) sender.join();
  ASSERT_TRUE(completions->wait_for(kTotal));

  const auto results = completions->results();
  std::vector<std::uint64_t> seqs;
  for (const auto& [index, result] : results) {
    ASSERT_EQ(result.error, StoreError::none) << index;
    EXPECT_EQ(result.message->text, std::to_string(index));
    seqs.push_back(result.message->seq);
  }
  // Each sender's messages are sequenced in the order it sent them.
  for (std::size_t t = 0; t < kThreads; ++t) {
    for (std::size_t i = 1; i < kPerThread; ++i) {
      EXPECT_LT(results.at(t * kPerThread + i - 1).message->seq,
                results.at(t * kPerThread + i).message->seq);
    }
  }
  std::sort(seqs.begin(), seqs.end());
  EXPECT_EQ(seqs, range(1, kTotal)) << "gaps or duplicates among the sequence numbers";
  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, kTotal));
  EXPECT_EQ(seqs_of(newest(store, kAliceBob, kTotal + 1).messages), range(1, kTotal));
}

TEST_F(SqliteStoreTest, AppendsWaitingDuringACommitShareTheNextOne) {
  constexpr std::size_t kCount = 1000;
  Gate gate;
  std::mutex sizes_mutex;
  std::vector<std::size_t> batch_sizes;
  SqliteOptions opts = options();
  opts.max_batch = 100;
  SqliteStore store(opts, [&](std::span<const MessagePtr> batch) {
    {
      std::lock_guard lock(sizes_mutex);
      batch_sizes.push_back(batch.size());
    }
    gate.pass();
  });
  const OpenOnExit open_on_exit{gate};

  auto completions = std::make_shared<Completions>();
  append_async(store, pending(kAliceBob, "alice", "0"), completions, 0);
  ASSERT_TRUE(gate.wait_for_arrival());  // the first commit is in the listener, held
  for (std::size_t i = 1; i < kCount; ++i) {
    append_async(store, pending(kAliceBob, "alice", std::to_string(i)), completions, i);
  }
  gate.open();
  ASSERT_TRUE(completions->wait_for(kCount));

  std::lock_guard lock(sizes_mutex);
  // 1 held commit, then the 999 waiting appends in commits of max_batch.
  ASSERT_EQ(batch_sizes.size(), 11u);
  EXPECT_EQ(batch_sizes[0], 1u);
  for (std::size_t i = 1; i < 10; ++i) EXPECT_EQ(batch_sizes[i], 100u) << i;
  EXPECT_EQ(batch_sizes[10], 99u);
}

TEST_F(SqliteStoreTest, DrainCommitsEverythingThenRefuses) {
  constexpr std::size_t kCount = 500;
  CommitLog log;
  SqliteStore store(options(), log.listener());
  auto completions = std::make_shared<Completions>();
  for (std::size_t i = 0; i < kCount; ++i) {
    append_async(store, pending(kAliceBob, "alice", std::to_string(i)), completions, i);
  }
  store.drain();
  // When drain returns everything taken is committed and announced.
  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, kCount));
  ASSERT_TRUE(completions->wait_for(kCount));
  for (const auto& [index, result] : completions->results()) {
    EXPECT_EQ(result.error, StoreError::none) << index;
  }

  const AppendResult refused = append(store, kAliceBob, "alice", "too late");
  EXPECT_EQ(refused.error, StoreError::shutting_down);
  EXPECT_EQ(refused.message, nullptr);
  store.drain();  // idempotent
  EXPECT_EQ(append(store, kAliceBob, "alice", "still too late").error, StoreError::shutting_down);

  // Reads still work while drained, and nothing refused was stored.
  EXPECT_EQ(seqs_of(newest(store, kAliceBob, kCount + 10).messages), range(1, kCount));
  EXPECT_EQ(log.messages().size(), kCount);
}

TEST_F(SqliteStoreTest, FullQueueRefusesWithOverloaded) {
  constexpr std::size_t kMaxQueued = 4;
  constexpr std::size_t kAttempts = 50;
  Gate gate;
  CommitLog log;
  SqliteOptions opts = options();
  opts.max_queued_appends = kMaxQueued;
  opts.max_batch = 1;
  auto record = log.listener();
  SqliteStore store(opts, [&](std::span<const MessagePtr> batch) {
    record(batch);
    gate.pass();
  });
  const OpenOnExit open_on_exit{gate};

  auto completions = std::make_shared<Completions>();
  append_async(store, pending(kAliceBob, "alice", "first"), completions, 0);
  ASSERT_TRUE(gate.wait_for_arrival());  // the commit thread is busy with "first"
  for (std::size_t i = 1; i <= kAttempts; ++i) {
    append_async(store, pending(kAliceBob, "alice", std::to_string(i)), completions, i);
  }
  // The refusals are answered at once, while the queue is still blocked.
  ASSERT_TRUE(completions->wait_for(kAttempts - kMaxQueued));
  gate.open();
  ASSERT_TRUE(completions->wait_for(kAttempts + 1));

  const AppendOutcomes outcomes = outcomes_of(completions->results());
  EXPECT_EQ(outcomes.overloaded, kAttempts - kMaxQueued);
  EXPECT_EQ(outcomes.seqs, range(1, kMaxQueued + 1));
  // Refused messages were not stored; accepted ones were, with no gaps.
  EXPECT_EQ(seqs_of(newest(store, kAliceBob, 100).messages), range(1, kMaxQueued + 1));
  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, kMaxQueued + 1));

  // Once the queue has room again, appends are taken.
  EXPECT_EQ(append(store, kAliceBob, "alice", "later").message->seq, kMaxQueued + 2);
}

// The writer's chat cache is bounded (max_cached_chats): past it, it empties
// and refills from `chats`, and every chat's sequence goes on where it was.
TEST_F(SqliteStoreTest, SequencesStayGapFreePastTheChatCacheBound) {
  SqliteOptions opts = options();
  opts.max_cached_chats = 2;
  SqliteStore store(opts, {});
  constexpr int kChats = 5;
  for (std::uint64_t round = 1; round <= 3; ++round) {
    for (int i = 0; i < kChats; ++i) {
      const ChatKey chat = ChatKey::of("alice", "user" + std::to_string(i));
      const AppendResult result = append(store, chat, "alice", std::to_string(round));
      ASSERT_EQ(result.error, StoreError::none);
      EXPECT_EQ(result.message->seq, round) << chat.str();
    }
  }
  for (int i = 0; i < kChats; ++i) {
    const ChatKey chat = ChatKey::of("alice", "user" + std::to_string(i));
    EXPECT_EQ(seqs_of(newest(store, chat, 10).messages), range(1, 3)) << chat.str();
  }
}

// ---------------------------------------------------------------------------
// Content
// ---------------------------------------------------------------------------

TEST_F(SqliteStoreTest, TextAndNamesRoundTripByteExact) {
  std::string text =
      "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE4\xBD\xA0\xE5\xA5\xBD \"quotes\" 'single' \\ ";
  text.push_back('\0');
  text += "after NUL\nnew line\r\n\ttab; DROP TABLE messages; --";
  text.push_back('\0');
  const std::string sender = "\xC3\xA9mile";
  const ChatKey chat = ChatKey::of(sender, "\xE5\xBC\xA0\xE4\xB8\x89");
  const std::string big(16 * 1024, 'z');

  std::string id;
  {
    SqliteStore store(options(), {});
    const AppendResult result = append(store, chat, sender, text);
    ASSERT_EQ(result.error, StoreError::none);
    EXPECT_EQ(result.message->text, text);
    id = result.message->id;
    ASSERT_EQ(append(store, chat, sender, big).error, StoreError::none);
  }
  SqliteStore reopened(options(), {});
  const HistoryPage page = newest(reopened, chat, 10);
  ASSERT_EQ(page.messages.size(), 2u);
  EXPECT_EQ(page.messages[0]->text.size(), text.size());
  EXPECT_EQ(page.messages[0]->text, text);
  EXPECT_EQ(page.messages[0]->sender, sender);
  EXPECT_EQ(page.messages[0]->id, id);
  EXPECT_EQ(page.messages[0]->chat, chat);
  EXPECT_EQ(page.messages[1]->text, big);
}

TEST_F(SqliteStoreTest, ChatsThatTheOldServiceConfusedStayApart) {
  SqliteStore store(options(), {});
  const ChatKey one = ChatKey::of("a_b", "c");
  const ChatKey two = ChatKey::of("a", "b_c");
  ASSERT_EQ(append(store, one, "a_b", "for c").error, StoreError::none);
  ASSERT_EQ(append(store, two, "a", "for b_c").error, StoreError::none);
  const HistoryPage first = newest(store, one, 100);
  const HistoryPage second = newest(store, two, 100);
  ASSERT_EQ(first.messages.size(), 1u);
  ASSERT_EQ(second.messages.size(), 1u);
  EXPECT_EQ(first.messages[0]->text, "for c");
  EXPECT_EQ(second.messages[0]->text, "for b_c");
  EXPECT_EQ(second.messages[0]->seq, 1u);
}

TEST_F(SqliteStoreTest, ReadMarksOnlyMoveForwardAndSurviveARestart) {
  {
    SqliteStore store(options(), {});
    for (int i = 0; i < 5; ++i) append(store, kAliceBob, "bob", "m" + std::to_string(i));
    ReadMarks marks = mark_read(store, kAliceBob, "alice", 3);
    ASSERT_EQ(marks.error, StoreError::none);
    EXPECT_EQ(marks.of(kAliceBob, "alice"), 3u);
    EXPECT_EQ(marks.of(kAliceBob, "bob"), 0u);
    marks = mark_read(store, kAliceBob, "alice", 2);  // a lagging device
    EXPECT_EQ(marks.of(kAliceBob, "alice"), 3u);
    marks = mark_read(store, kAliceBob, "bob", 5);
    EXPECT_EQ(marks.of(kAliceBob, "alice"), 3u);
    EXPECT_EQ(marks.of(kAliceBob, "bob"), 5u);
  }
  SqliteStore again(options(), {});
  const ReadMarks marks = wait<ReadMarks>([&](auto handler) {
    again.read_marks(kAliceBob, Store::ReadMarksHandler(std::move(handler)));
  });
  EXPECT_EQ(marks.of(kAliceBob, "alice"), 3u);
  EXPECT_EQ(marks.of(kAliceBob, "bob"), 5u);
}

// Conversation lists (newest first, unread counts) are checked for every backend by
// StoreContract.ConversationsAreNewestFirstWithUnreadCounts (contract_test.cpp).

// Databases made by earlier versions had (user, last_activity_ms) indexes,
// which every commit rewrote; opening one drops them and lists as before.
TEST_F(SqliteStoreTest, OpeningAnOlderDatabaseDropsTheActivityIndexes) {
  {
    SqliteStore store(options(), {});
    append(store, kAliceBob, "bob", "b1");
  }
  const auto path = (dir_ / "chat.db").string();
  const auto index_names = [&] {
    Database db = open_database(path);
    std::vector<std::string> names;
    Statement list = prepare_or_throw(
        db.get(),
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'chats'"
        " AND sql IS NOT NULL ORDER BY name");
    while (sqlite3_step(list.get()) == SQLITE_ROW) names.push_back(column_text(list.get(), 0));
    return names;
  };
  {
    Database db = open_database(path);
    exec_or_throw(db.get(), "CREATE INDEX chats_by_user_a ON chats (user_a, last_activity_ms)");
    exec_or_throw(db.get(), "CREATE INDEX chats_by_user_b ON chats (user_b, last_activity_ms)");
  }
  ASSERT_EQ(index_names().size(), 4u);
  SqliteStore reopened(options(), {});
  EXPECT_EQ(index_names(), (std::vector<std::string>{"chats_of_user_a", "chats_of_user_b"}));
  const ConversationList list = conversations(reopened, "alice", 10);
  ASSERT_EQ(list.conversations.size(), 1u);
  EXPECT_EQ(list.conversations[0].last->text, "b1");
}

}  // namespace
}  // namespace chatd::store::sqlite
