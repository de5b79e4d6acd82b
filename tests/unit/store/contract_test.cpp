// What every store backend must do, run against each real backend through the
// real QueuedStore: SQLite always, MongoDB when CHATD_TEST_MONGO_URI names a
// server (scripts/test starts a FerretDB for it; scripts/with-ferretdb).
//
// A new backend adds one struct like SqliteContract below to `Backends`.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/mongo/mongo_store.h"
#include "store/queued_store.h"
#include "store/sqlite/sqlite_store.h"
#include "store_test_support.h"

namespace chatd::store {
namespace {
using namespace test_support;

/// A name no other test run uses: a database or a directory of its own.
std::string unique_name(const char* backend) {
  static std::atomic<int> counter{0};
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string("chatd_contract_") + backend + "_" + std::to_string(::getpid()) +
                     "_" + std::to_string(counter.fetch_add(1)) + "_" + test->name();
  std::replace_if(
      name.begin(), name.end(), [](unsigned char c) { return !std::isalnum(c) && c != '_'; }, '_');
  return name.substr(0, 60);  // MongoDB database names are at most 63 bytes
}

struct SqliteContract {
  static constexpr const char* kName = "Sqlite";
  static inline const std::size_t kMaxBatch = sqlite::SqliteOptions{}.max_batch;
  static const char* unavailable() { return nullptr; }

  SqliteContract() : dir(std::filesystem::temp_directory_path() / unique_name("sqlite")) {
    std::filesystem::remove_all(dir);
  }
  ~SqliteContract() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  std::unique_ptr<Backend> backend(std::size_t reader_threads) const {
    sqlite::SqliteOptions options;
    options.path = (dir / "chat.db").string();
    options.reader_threads = reader_threads;
    options.read_hooks = read_hooks;
    return std::make_unique<sqlite::SqliteBackend>(options);
  }

  std::filesystem::path dir;
  bool read_hooks = false;
};

struct MongoContract {
  static constexpr const char* kName = "Mongo";
  static inline const std::size_t kMaxBatch = mongo::MongoOptions{}.max_batch;
  static const char* unavailable() {
    const char* uri = std::getenv("CHATD_TEST_MONGO_URI");
    return uri != nullptr && *uri != '\0'
               ? nullptr
               : "CHATD_TEST_MONGO_URI is not set (scripts/with-ferretdb sets it)";
  }

  /// CHATD_TEST_MONGO_URI (mongodb://host:port[/db][?options]) with a database
  /// of this test's own.
  MongoContract() {
    const std::string base = std::getenv("CHATD_TEST_MONGO_URI");
    const std::size_t hosts = base.find("://");
    const std::size_t query = base.find('?');
    const std::size_t path = base.find('/', hosts == std::string::npos ? 0 : hosts + 3);
    const std::size_t end = std::min(path, query);
    uri = base.substr(0, end) + "/" + unique_name("mongo") +
          (query == std::string::npos ? "" : base.substr(query));
  }
  std::unique_ptr<Backend> backend(std::size_t reader_threads) const {
    mongo::MongoOptions options;
    options.uri = uri;
    options.reader_threads = reader_threads;
    options.read_hooks = read_hooks;
    return std::make_unique<mongo::MongoBackend>(options);
  }
  bool read_hooks = false;

  std::string uri;
};

/// Holds a backend's reader threads inside their calls until opened, so that
/// the read queue fills deterministically. Everything else goes straight to
/// the real backend.
class GatedBackend final : public Backend {
 public:
  GatedBackend(std::unique_ptr<Backend> inner, Gate& gate)
      : inner_(std::move(inner)), gate_(gate) {}

  std::unique_ptr<Committer> make_committer() override { return inner_->make_committer(); }
  std::unique_ptr<Reader> make_reader(std::size_t index) override {
    return std::make_unique<GatedReader>(inner_->make_reader(index), gate_);
  }
  std::unique_ptr<Outbox> make_outbox() override { return inner_->make_outbox(); }
  std::unique_ptr<Maintenance> make_maintenance() override { return inner_->make_maintenance(); }
  bool ready() const override { return inner_->ready(); }

 private:
  class GatedReader final : public Reader {
   public:
    GatedReader(std::unique_ptr<Reader> inner, Gate& gate)
        : inner_(std::move(inner)), gate_(gate) {}
    HistoryPage history(const chat::ChatKey& chat, const HistoryQuery& query) override {
      gate_.pass();
      return inner_->history(chat, query);
    }
    ReadMarks mark_read(const chat::ChatKey& chat, const std::string& user,
                        std::uint64_t seq) override {
      gate_.pass();
      return inner_->mark_read(chat, user, seq);
    }
    ConversationList conversations(const std::string& user, std::size_t limit) override {
      gate_.pass();
      return inner_->conversations(user, limit);
    }
    BlockList blocks(const std::string& user) override { return inner_->blocks(user); }

   private:
    std::unique_ptr<Reader> inner_;
    Gate& gate_;
  };

  std::unique_ptr<Backend> inner_;
  Gate& gate_;
};

template <typename Contract>
class StoreContract : public StoreTest {
 protected:
  void SetUp() override {
    if (const char* why = Contract::unavailable()) GTEST_SKIP() << why;
    contract_ = std::make_unique<Contract>();
  }

  /// The backend behind a QueuedStore, as the store factory builds it, ready.
  std::unique_ptr<Store> open(QueueOptions queues = {}, CommitListener listener = {},
                              Gate* read_gate = nullptr) {
    queues.max_batch = std::min(queues.max_batch, Contract::kMaxBatch);
    std::unique_ptr<Backend> backend = contract_->backend(queues.reader_threads);
    if (read_gate != nullptr) {
      backend = std::make_unique<GatedBackend>(std::move(backend), *read_gate);
    }
    auto store = std::make_unique<QueuedStore>(std::move(backend), queues, std::move(listener),
                                               CommitObserver{});
    // MongoDB connects in the background; SQLite is ready at once.
    const auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (!store->ready() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE(store->ready()) << "the backend did not become ready";
    return store;
  }

  /// Waits until the clock moves past `since`: activity is kept in milliseconds.
  static void next_millisecond(std::int64_t since) {
    while (chat::now_ms() <= since) std::this_thread::yield();
  }

  std::unique_ptr<Contract> contract_;
};

struct BackendNames {
  template <typename Contract>
  static std::string GetName(int) {
    return Contract::kName;
  }
};

using Backends = ::testing::Types<SqliteContract, MongoContract>;
TYPED_TEST_SUITE(StoreContract, Backends, BackendNames);

// ---------------------------------------------------------------------------
// Order and sequence numbers
// ---------------------------------------------------------------------------

TYPED_TEST(StoreContract, AppendsFromOneSourceKeepTheirOrder) {
  CommitLog log;
  auto store = this->open({}, log.listener());
  constexpr std::size_t kCount = 50;
  auto completions = std::make_shared<Completions>();
  for (std::size_t i = 0; i < kCount; ++i) {
    this->append_async(*store, pending(kAliceBob, "alice", std::to_string(i)), completions, i);
  }
  ASSERT_TRUE(completions->wait_for(kCount));
  for (const auto& [index, result] : completions->results()) {
    ASSERT_EQ(result.error, StoreError::none);
    EXPECT_EQ(result.message->seq, index + 1);
    EXPECT_EQ(result.message->text, std::to_string(index));
    EXPECT_FALSE(result.duplicate);
  }
  const HistoryPage page = this->newest(*store, kAliceBob, 100);
  ASSERT_EQ(page.error, StoreError::none);
  EXPECT_EQ(seqs_of(page.messages), range(1, kCount));
  for (std::size_t i = 0; i < page.messages.size(); ++i) {
    EXPECT_EQ(page.messages[i]->text, std::to_string(i));
  }
  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, kCount)) << "the listener hears them in order";
}

TYPED_TEST(StoreContract, SequencesAreGapFreePerChatUnderConcurrentAppends) {
  CommitLog log;
  auto store = this->open({}, log.listener());
  constexpr std::size_t kThreads = 4;
  constexpr std::size_t kPerThread = 40;
  auto completions = std::make_shared<Completions>();
  std::vector<std::thread> senders;
  for (std::size_t t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      const ChatKey& chat = t % 2 == 0 ? kAliceBob : kAliceCarol;
      for (std::size_t i = 0; i < kPerThread; ++i) {
        this->append_async(*store, pending(chat, "alice", std::to_string(t)), completions,
                           t * kPerThread + i);
      }
    });
  }
  for (auto& sender : senders) sender.join();
  ASSERT_TRUE(completions->wait_for(kThreads * kPerThread));

  std::map<std::string, std::vector<std::uint64_t>> seqs;
  for (const auto& [index, result] : completions->results()) {
    ASSERT_EQ(result.error, StoreError::none) << index;
    seqs[result.message->chat.str()].push_back(result.message->seq);
  }
  const std::uint64_t per_chat = kThreads / 2 * kPerThread;
  for (auto& [chat, chat_seqs] : seqs) {
    std::sort(chat_seqs.begin(), chat_seqs.end());
    EXPECT_EQ(chat_seqs, range(1, per_chat)) << chat;
  }
  EXPECT_EQ(seqs_of(this->newest(*store, kAliceBob, 1000).messages), range(1, per_chat));
  EXPECT_EQ(seqs_of(this->newest(*store, kAliceCarol, 1000).messages), range(1, per_chat));
  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, per_chat));
  EXPECT_EQ(log.seqs_of_chat(kAliceCarol), range(1, per_chat));
}

// ---------------------------------------------------------------------------
// Client ids
// ---------------------------------------------------------------------------

TYPED_TEST(StoreContract, RetriedClientIdGivesTheOriginal) {
  CommitLog log;
  auto store = this->open({}, log.listener());
  const AppendResult first = this->append(*store, kAliceBob, "alice", "hello", "c-1");
  ASSERT_EQ(first.error, StoreError::none);
  EXPECT_FALSE(first.duplicate);

  const AppendResult retry =
      this->append(*store, pending(kAliceBob, "alice", "hello again", "c-1", 42));
  ASSERT_EQ(retry.error, StoreError::none);
  EXPECT_TRUE(retry.duplicate);
  EXPECT_EQ(retry.message->seq, first.message->seq);
  EXPECT_EQ(retry.message->id, first.message->id);
  EXPECT_EQ(retry.message->text, "hello") << "the original, not the retry";
  EXPECT_EQ(retry.message->origin, 42u) << "told to the connection that retried";

  // The same id from the other user, or in another chat, is another message.
  EXPECT_FALSE(this->append(*store, kAliceBob, "bob", "mine", "c-1").duplicate);
  EXPECT_FALSE(this->append(*store, kAliceCarol, "alice", "other chat", "c-1").duplicate);

  EXPECT_EQ(seqs_of(this->newest(*store, kAliceBob, 10).messages), range(1, 2));
  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, 2)) << "a duplicate is not announced again";
}

TYPED_TEST(StoreContract, TheSameClientIdTwiceInOneBatchIsStoredOnce) {
  Gate gate;
  auto store = this->open({}, [&](std::span<const MessagePtr>) { gate.pass(); });
  const OpenOnExit open_on_exit{gate};
  auto completions = std::make_shared<Completions>();
  this->append_async(*store, pending(kAliceBob, "alice", "hold"), completions, 0);
  ASSERT_TRUE(gate.wait_for_arrival());  // the next two wait together for the next commit
  this->append_async(*store, pending(kAliceBob, "alice", "once", "c-2"), completions, 1);
  this->append_async(*store, pending(kAliceBob, "alice", "once", "c-2"), completions, 2);
  gate.open();
  ASSERT_TRUE(completions->wait_for(3));
  const auto results = completions->results();
  ASSERT_EQ(results.at(1).error, StoreError::none);
  ASSERT_EQ(results.at(2).error, StoreError::none);
  EXPECT_EQ(results.at(1).message->seq, 2u);
  EXPECT_EQ(results.at(2).message->seq, 2u);
  EXPECT_NE(results.at(1).duplicate, results.at(2).duplicate) << "one of them is the original";
  EXPECT_EQ(seqs_of(this->newest(*store, kAliceBob, 10).messages), range(1, 2));
}

// ---------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------

TYPED_TEST(StoreContract, HistoryPagesBackwardAndForward) {
  auto store = this->open();
  for (int i = 1; i <= 10; ++i) this->append(*store, kAliceBob, "alice", std::to_string(i));

  HistoryPage page = this->newest(*store, kAliceBob, 3);
  ASSERT_EQ(page.error, StoreError::none);
  EXPECT_EQ(seqs_of(page.messages), range(8, 10)) << "the newest, oldest first";
  EXPECT_TRUE(page.has_more);
  EXPECT_EQ(page.messages.front()->text, "8");

  page = this->newest(*store, kAliceBob, 3, 8);
  EXPECT_EQ(seqs_of(page.messages), range(5, 7));
  EXPECT_TRUE(page.has_more);

  page = this->newest(*store, kAliceBob, 5, 3);
  EXPECT_EQ(seqs_of(page.messages), range(1, 2));
  EXPECT_FALSE(page.has_more);

  page = this->newest(*store, kAliceBob, 10);
  EXPECT_EQ(seqs_of(page.messages), range(1, 10));
  EXPECT_FALSE(page.has_more) << "exactly the limit: nothing beyond";

  page = this->after(*store, kAliceBob, 7, 2);
  EXPECT_EQ(seqs_of(page.messages), range(8, 9)) << "a resume: the oldest after the seq";
  EXPECT_TRUE(page.has_more);

  page = this->after(*store, kAliceBob, 8, 5);
  EXPECT_EQ(seqs_of(page.messages), range(9, 10));
  EXPECT_FALSE(page.has_more);

  page = this->after(*store, kAliceBob, 10, 5);
  EXPECT_EQ(page.error, StoreError::none);
  EXPECT_TRUE(page.messages.empty());
  EXPECT_FALSE(page.has_more);

  HistoryQuery between;
  between.after_seq = 2;
  between.before_seq = 6;
  between.limit = 10;
  EXPECT_EQ(seqs_of(this->history(*store, kAliceBob, between).messages), range(3, 5));
}

TYPED_TEST(StoreContract, HistoryOfAnUnknownChatIsEmpty) {
  auto store = this->open();
  const HistoryPage page = this->newest(*store, ChatKey::of("nobody", "else"), 10);
  EXPECT_EQ(page.error, StoreError::none);
  EXPECT_TRUE(page.messages.empty());
  EXPECT_FALSE(page.has_more);
}

TYPED_TEST(StoreContract, HistorySeesEveryAcknowledgedMessage) {
  auto store = this->open();
  for (int i = 1; i <= 20; ++i) {
    const AppendResult result = this->append(*store, kAliceBob, "bob", std::to_string(i));
    ASSERT_EQ(result.error, StoreError::none);
    const HistoryPage page = this->newest(*store, kAliceBob, 1);
    ASSERT_EQ(page.messages.size(), 1u);
    EXPECT_EQ(page.messages.front()->id, result.message->id);
  }
}

// ---------------------------------------------------------------------------
// Read receipts and conversations
// ---------------------------------------------------------------------------

TYPED_TEST(StoreContract, ReadReceiptsNeverGoBack) {
  auto store = this->open();
  for (int i = 1; i <= 5; ++i) this->append(*store, kAliceBob, "bob", std::to_string(i));

  ReadMarks marks = this->mark_read(*store, kAliceBob, "alice", 3);
  ASSERT_EQ(marks.error, StoreError::none);
  EXPECT_EQ(marks.of(kAliceBob, "alice"), 3u);
  EXPECT_EQ(marks.of(kAliceBob, "bob"), 0u);

  marks = this->mark_read(*store, kAliceBob, "alice", 2);
  EXPECT_EQ(marks.of(kAliceBob, "alice"), 3u) << "a lower receipt changes nothing";

  marks = this->mark_read(*store, kAliceBob, "bob", 5);
  EXPECT_EQ(marks.of(kAliceBob, "alice"), 3u);
  EXPECT_EQ(marks.of(kAliceBob, "bob"), 5u);

  marks = this->template wait<ReadMarks>([&](auto handler) {
    store->read_marks(kAliceBob, Store::ReadMarksHandler(std::move(handler)));
  });
  ASSERT_EQ(marks.error, StoreError::none);
  EXPECT_EQ(marks.of(kAliceBob, "alice"), 3u);
  EXPECT_EQ(marks.of(kAliceBob, "bob"), 5u);
  EXPECT_EQ(this->mark_read(*store, kAliceCarol, "carol", 0).of(kAliceCarol, "carol"), 0u)
      << "another chat's receipts are its own";
}

TYPED_TEST(StoreContract, ConversationsAreNewestFirstWithUnreadCounts) {
  auto store = this->open();
  this->append(*store, kAliceBob, "bob", "b1");
  this->append(*store, kAliceBob, "bob", "b2");
  const AppendResult a1 = this->append(*store, kAliceBob, "alice", "a1");
  this->next_millisecond(a1.message->timestamp_ms);
  this->append(*store, kAliceCarol, "carol", "c1");
  this->mark_read(*store, kAliceBob, "alice", 1);

  ConversationList list = this->conversations(*store, "alice", 10);
  ASSERT_EQ(list.error, StoreError::none);
  ASSERT_EQ(list.conversations.size(), 2u);
  EXPECT_EQ(list.conversations[0].chat, kAliceCarol);  // the newest activity
  EXPECT_EQ(list.conversations[0].last->text, "c1");
  EXPECT_EQ(list.conversations[0].unread, 1u);
  EXPECT_EQ(list.conversations[1].chat, kAliceBob);
  EXPECT_EQ(list.conversations[1].last->text, "a1");
  EXPECT_EQ(list.conversations[1].read_seq, 1u);
  EXPECT_EQ(list.conversations[1].unread, 1u) << "b2 only: b1 is read, a1 is alice's own";

  EXPECT_EQ(this->conversations(*store, "alice", 1).conversations.size(), 1u);
  EXPECT_EQ(this->conversations(*store, "bob", 10).conversations.at(0).unread, 1u);  // a1
  EXPECT_TRUE(this->conversations(*store, "dave", 10).conversations.empty());
}

// ---------------------------------------------------------------------------
// Errors and bounds
// ---------------------------------------------------------------------------

TYPED_TEST(StoreContract, AppendsPastTheQueueBoundAreOverloaded) {
  constexpr std::size_t kMaxQueued = 3;
  constexpr std::size_t kAttempts = 10;
  Gate gate;
  QueueOptions queues;
  queues.max_queued_appends = kMaxQueued;
  queues.max_batch = 1;
  auto store = this->open(queues, [&](std::span<const MessagePtr>) { gate.pass(); });
  const OpenOnExit open_on_exit{gate};

  auto completions = std::make_shared<Completions>();
  this->append_async(*store, pending(kAliceBob, "alice", "first"), completions, 0);
  ASSERT_TRUE(gate.wait_for_arrival());  // the writer is busy with "first"
  for (std::size_t i = 1; i <= kAttempts; ++i) {
    this->append_async(*store, pending(kAliceBob, "alice", std::to_string(i)), completions, i);
  }
  ASSERT_TRUE(completions->wait_for(kAttempts - kMaxQueued));  // answered while blocked
  EXPECT_EQ(store->queue_stats().queued_appends, kMaxQueued);
  EXPECT_EQ(store->queue_stats().refused_appends, kAttempts - kMaxQueued);
  gate.open();
  ASSERT_TRUE(completions->wait_for(kAttempts + 1));

  const AppendOutcomes outcomes = outcomes_of(completions->results());
  EXPECT_EQ(outcomes.overloaded, kAttempts - kMaxQueued);
  EXPECT_EQ(outcomes.seqs, range(1, kMaxQueued + 1));
  EXPECT_EQ(seqs_of(this->newest(*store, kAliceBob, 100).messages), range(1, kMaxQueued + 1))
      << "refused messages are not stored";
  EXPECT_EQ(store->queue_stats().queued_appends, 0u);
}

TYPED_TEST(StoreContract, ReadsPastTheQueueBoundAreOverloaded) {
  constexpr std::size_t kMaxQueued = 2;
  std::mutex mutex;
  std::condition_variable answered;
  std::vector<StoreError> errors;
  const auto record = [&](StoreError error) {
    std::lock_guard lock(mutex);
    errors.push_back(error);
    answered.notify_all();
  };
  const auto wait_for = [&](std::size_t count) {
    std::unique_lock lock(mutex);
    return answered.wait_for(lock, kTimeout, [&] { return errors.size() >= count; });
  };
  Gate gate;
  QueueOptions queues;
  queues.max_queued_reads = kMaxQueued;
  queues.reader_threads = 1;
  auto store = this->open(queues, {}, &gate);
  const OpenOnExit open_on_exit{gate};
  this->append(*store, kAliceBob, "alice", "hi");

  const auto read = [&] {
    async_history(*store, kAliceBob, HistoryQuery{},
                  asio::bind_executor(this->io_, [&](HistoryPage page) { record(page.error); }));
  };
  read();  // taken by the one reader, which the gate holds
  ASSERT_TRUE(gate.wait_for_arrival());
  read();  // two wait in the queue
  store->read_marks(kAliceBob,
                    asio::bind_executor(this->io_, [&](ReadMarks marks) { record(marks.error); }));
  read();  // and these are refused at once
  store->mark_read(kAliceBob, "alice", 1,
                   asio::bind_executor(this->io_, [&](ReadMarks marks) { record(marks.error); }));
  store->conversations("alice", 10, asio::bind_executor(this->io_, [&](ConversationList list) {
                         record(list.error);
                       }));
  ASSERT_TRUE(wait_for(3));
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(errors, std::vector<StoreError>(3, StoreError::overloaded));
  }
  EXPECT_EQ(store->queue_stats().queued_reads, kMaxQueued);
  EXPECT_EQ(store->queue_stats().refused_reads, 3u);

  gate.open();
  ASSERT_TRUE(wait_for(3 + 1 + kMaxQueued));
  {
    std::lock_guard lock(mutex);
    EXPECT_EQ(std::count(errors.begin(), errors.end(), StoreError::none), 1 + kMaxQueued);
  }
  EXPECT_EQ(this->mark_read(*store, kAliceBob, "alice", 0).of(kAliceBob, "alice"), 0u)
      << "the refused receipt was not stored";
  EXPECT_EQ(store->queue_stats().queued_reads, 0u);
}

TYPED_TEST(StoreContract, DrainCommitsWhatItTookThenAnswersShuttingDown) {
  CommitLog log;
  auto store = this->open({}, log.listener());
  auto completions = std::make_shared<Completions>();
  for (std::size_t i = 0; i < 20; ++i) {
    this->append_async(*store, pending(kAliceBob, "alice", std::to_string(i)), completions, i);
  }
  store->drain();
  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, 20)) << "drain returns once all is committed";
  ASSERT_TRUE(completions->wait_for(20));
  for (const auto& [index, result] : completions->results()) {
    EXPECT_EQ(result.error, StoreError::none) << index;
  }
  const AppendResult late = this->append(*store, kAliceBob, "alice", "too late");
  EXPECT_EQ(late.error, StoreError::shutting_down);
  EXPECT_EQ(late.message, nullptr);
  EXPECT_EQ(seqs_of(this->newest(*store, kAliceBob, 100).messages), range(1, 20))
      << "reads still work while draining";
  store->drain();  // idempotent
}

// ---------------------------------------------------------------------------
// The webhook outbox
// ---------------------------------------------------------------------------

/// Every chat read from its oldest pending event.
const Outbox::ReadFrom kFromOldest = [](const ChatKey&) { return std::optional<std::uint64_t>(0); };

PendingMessage hooked(const ChatKey& chat, std::string sender, std::string text,
                      std::uint8_t hooks) {
  PendingMessage message = pending(chat, std::move(sender), std::move(text));
  message.hooks = hooks;
  return message;
}

TYPED_TEST(StoreContract, TheOutboxHoldsEveryCommittedEventUntilSettled) {
  auto store = this->open();
  // Messages without events (committed while webhooks were off) never show.
  ASSERT_EQ(this->append(*store, kAliceBob, "alice", "before webhooks").error, StoreError::none);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(this->append(*store, hooked(kAliceBob, "alice", std::to_string(i),
                                          kHookCreated | kHookOffline))
                  .error,
              StoreError::none);
  }
  ASSERT_EQ(this->append(*store, hooked(kAliceCarol, "carol", "hi", kHookCreated)).error,
            StoreError::none);
  auto outbox = store->make_outbox();
  ASSERT_TRUE(outbox->hold_lease("one", std::chrono::seconds(10)));

  auto page = outbox->pending(100, 100, kFromOldest);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->size(), 4u);
  std::map<std::string, std::vector<std::uint64_t>> by_chat;
  for (const auto& message : *page) by_chat[message->chat.str()].push_back(message->seq);
  EXPECT_EQ(by_chat[kAliceBob.str()], (std::vector<std::uint64_t>{2, 3, 4})) << "oldest first";
  EXPECT_EQ(by_chat[kAliceCarol.str()], (std::vector<std::uint64_t>{1}));
  for (const auto& message : *page) {
    EXPECT_EQ(message->hooks,
              message->chat == kAliceBob ? kHookCreated | kHookOffline : kHookCreated);
  }
  auto backlog = outbox->backlog();
  ASSERT_TRUE(backlog);
  EXPECT_EQ(backlog->events, 4u);
  EXPECT_GT(backlog->oldest_ms, 0);

  // One event of seq 2 delivered, the other kept as failed; seq 3 delivered whole.
  const std::vector<SettledHook> delivered{{kAliceBob, 2, kHookCreated, {}},
                                           {kAliceBob, 3, kHookCreated, {}},
                                           {kAliceBob, 3, kHookOffline, {}}};
  const std::vector<FailedEvent> failed{{.id = "evt_x_offline",
                                         .type = "message.offline",
                                         .chat = kAliceBob,
                                         .seq = 2,
                                         .bit = kHookOffline,
                                         .reader = {},
                                         .attempts = 3,
                                         .last_error = "HTTP 500",
                                         .failed_ms = chat::now_ms(),
                                         .body = "{}"}};
  ASSERT_TRUE(outbox->settle(delivered, failed));
  page = outbox->pending(100, 100, kFromOldest);
  ASSERT_TRUE(page);
  std::vector<std::pair<std::uint64_t, std::uint8_t>> left;
  for (const auto& message : *page) {
    if (message->chat == kAliceBob) left.emplace_back(message->seq, message->hooks);
  }
  EXPECT_EQ(
      left,
      (std::vector<std::pair<std::uint64_t, std::uint8_t>>{{4, kHookCreated | kHookOffline}}));

  auto failures = outbox->failed(10);
  ASSERT_TRUE(failures);
  ASSERT_EQ(failures->size(), 1u);
  EXPECT_EQ((*failures)[0].id, "evt_x_offline");
  EXPECT_EQ((*failures)[0].attempts, 3u);
  EXPECT_EQ((*failures)[0].last_error, "HTTP 500");
  EXPECT_EQ(outbox->backlog()->failed, 1u);

  // A retry makes the event pending again and takes it off the failed list.
  EXPECT_EQ(outbox->retry("evt_unknown"), std::optional<bool>(false));
  EXPECT_EQ(outbox->retry("evt_x_offline"), std::optional<bool>(true));
  EXPECT_TRUE(outbox->failed(10)->empty());
  page = outbox->pending(100, 100, kFromOldest);
  ASSERT_TRUE(page);
  bool again = false;
  for (const auto& message : *page) {
    again = again ||
            (message->chat == kAliceBob && message->seq == 2 && message->hooks == kHookOffline);
  }
  EXPECT_TRUE(again) << "the retried event is pending again";

  // History still shows every message, events or not.
  EXPECT_EQ(seqs_of(this->newest(*store, kAliceBob, 100).messages), range(1, 4));
}

TYPED_TEST(StoreContract, TheOutboxTakesChatsInTurn) {
  auto store = this->open();
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(this->append(*store, hooked(kAliceBob, "alice", "ab", kHookCreated)).error,
              StoreError::none);
    ASSERT_EQ(this->append(*store, hooked(kAliceCarol, "alice", "ac", kHookCreated)).error,
              StoreError::none);
  }
  auto outbox = store->make_outbox();
  // One chat a call, three events each: the next call takes the other chat,
  // then the first again (from its oldest: nothing was settled).
  const auto first = outbox->pending(1, 3, kFromOldest);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->size(), 3u);
  EXPECT_EQ(seqs_of(*first), range(1, 3));
  const auto second = outbox->pending(1, 3, kFromOldest);
  ASSERT_TRUE(second);
  ASSERT_EQ(second->size(), 3u);
  EXPECT_NE(first->front()->chat, second->front()->chat) << "a busy chat must not starve others";
  const auto third = outbox->pending(1, 3, kFromOldest);
  ASSERT_TRUE(third);
  ASSERT_FALSE(third->empty());
  EXPECT_EQ(third->front()->chat, first->front()->chat) << "round and round";
  // Both chats at once, and no chat twice in one call.
  const auto both = outbox->pending(5, 2, kFromOldest);
  ASSERT_TRUE(both);
  EXPECT_EQ(both->size(), 4u);
  // Past what the caller holds, and not at all from a chat it skips.
  const auto past = outbox->pending(5, 10, [](const ChatKey& chat) -> std::optional<std::uint64_t> {
    if (chat == kAliceBob) return 3;
    return std::nullopt;
  });
  ASSERT_TRUE(past);
  EXPECT_EQ(seqs_of(*past), range(4, 5));
  for (const auto& message : *past) EXPECT_EQ(message->chat, kAliceBob);
}

TYPED_TEST(StoreContract, AReceiptMovingForwardIsAReadEventOnceSettled) {
  this->contract_->read_hooks = true;
  auto store = this->open();
  ASSERT_EQ(this->append(*store, kAliceBob, "alice", "one").error, StoreError::none);
  ASSERT_EQ(this->append(*store, kAliceBob, "alice", "two").error, StoreError::none);
  auto outbox = store->make_outbox();
  EXPECT_TRUE(outbox->pending_reads(10)->empty());

  this->mark_read(*store, kAliceBob, "bob", 1);
  auto reads = outbox->pending_reads(10);
  ASSERT_TRUE(reads);
  ASSERT_EQ(reads->size(), 1u);
  EXPECT_EQ((*reads)[0].chat, kAliceBob);
  EXPECT_EQ((*reads)[0].reader, "bob");
  EXPECT_EQ((*reads)[0].seq, 1u);
  EXPECT_GT((*reads)[0].ts_ms, 0);
  EXPECT_EQ(outbox->backlog()->events, 1u);

  // The receipt moves on before the event for seq 1 is settled: settling it
  // leaves the newer one to send; a receipt going back changes nothing.
  this->mark_read(*store, kAliceBob, "bob", 2);
  this->mark_read(*store, kAliceBob, "bob", 1);
  ASSERT_TRUE(outbox->settle(std::vector<SettledHook>{{kAliceBob, 1, kHookRead, "bob"}}, {}));
  reads = outbox->pending_reads(10);
  ASSERT_TRUE(reads);
  ASSERT_EQ(reads->size(), 1u);
  EXPECT_EQ((*reads)[0].seq, 2u);
  ASSERT_TRUE(outbox->settle(std::vector<SettledHook>{{kAliceBob, 2, kHookRead, "bob"}}, {}));
  EXPECT_TRUE(outbox->pending_reads(10)->empty());
  this->mark_read(*store, kAliceBob, "bob", 2);  // not forward: no event
  EXPECT_TRUE(outbox->pending_reads(10)->empty());
  EXPECT_EQ(this->mark_read(*store, kAliceBob, "bob", 0).of(kAliceBob, "bob"), 2u);
}

TYPED_TEST(StoreContract, WithoutReadHooksAReceiptIsNoEvent) {
  auto store = this->open();
  ASSERT_EQ(this->append(*store, kAliceBob, "alice", "one").error, StoreError::none);
  this->mark_read(*store, kAliceBob, "bob", 1);
  EXPECT_TRUE(store->make_outbox()->pending_reads(10)->empty());
}

TYPED_TEST(StoreContract, OneInstanceHoldsTheLeaseUntilItRunsOut) {
  auto store = this->open();
  auto first = store->make_outbox();
  auto second = store->make_outbox();
  ASSERT_TRUE(first->hold_lease("first", std::chrono::milliseconds(1500)));
  if (std::string(TypeParam::kName) == "Sqlite") {
    // One instance per SQLite file (the lock file): the lease is always its own.
    EXPECT_TRUE(second->hold_lease("second", std::chrono::milliseconds(1500)));
    return;
  }
  EXPECT_FALSE(second->hold_lease("second", std::chrono::milliseconds(1500)));
  EXPECT_TRUE(first->hold_lease("first", std::chrono::milliseconds(300))) << "renewed";
  const auto deadline = std::chrono::steady_clock::now() + kTimeout;
  bool taken = false;
  while (!taken && std::chrono::steady_clock::now() < deadline) {
    taken = second->hold_lease("second", std::chrono::milliseconds(1500));
    if (!taken) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(taken) << "the lease ran out and the other instance took it";
  EXPECT_FALSE(first->hold_lease("first", std::chrono::milliseconds(1500)));
}

// ---------------------------------------------------------------------------
// Changes: edits, deletes, blocks (docs/protocol.md, "A chat's order")
// ---------------------------------------------------------------------------

namespace lifecycle {

PendingMessage change(chat::EntryKind kind, const ChatKey& chat, std::string sender,
                      std::uint64_t target, std::string text = {}, std::string client_id = {}) {
  PendingMessage message = pending(chat, std::move(sender), std::move(text), std::move(client_id));
  message.kind = kind;
  message.target = target;
  return message;
}

HistoryQuery whole_order() {
  HistoryQuery query;
  query.limit = 100;
  query.oldest_first = true;
  query.messages_only = false;
  return query;
}

}  // namespace lifecycle

TYPED_TEST(StoreContract, EditsAndDeletesTakeTheNextSeqAndChangeTheirMessage) {
  using lifecycle::change;
  CommitLog log;
  auto store = this->open({}, log.listener());
  const AppendResult sent = this->append(*store, kAliceBob, "alice", "helo");
  ASSERT_EQ(sent.error, StoreError::none);
  this->append(*store, kAliceBob, "bob", "hi");

  const AppendResult edit =
      this->append(*store, change(chat::EntryKind::edit, kAliceBob, "alice", 1, "hello"));
  ASSERT_EQ(edit.error, StoreError::none);
  ASSERT_EQ(edit.refusal, Refusal::none);
  EXPECT_EQ(edit.message->seq, 3u);
  EXPECT_EQ(edit.message->kind, chat::EntryKind::edit);
  EXPECT_EQ(edit.message->target, 1u);
  EXPECT_EQ(edit.message->target_id, sent.message->id);
  EXPECT_EQ(edit.message->text, "hello");

  // By id instead of seq.
  PendingMessage by_id = change(chat::EntryKind::remove, kAliceBob, "alice", 0);
  by_id.target_id = sent.message->id;
  const AppendResult removed = this->append(*store, by_id);
  ASSERT_EQ(removed.refusal, Refusal::none);
  EXPECT_EQ(removed.message->seq, 4u);
  EXPECT_EQ(removed.message->target, 1u);

  // A page shows messages in their current state; the whole order has the changes.
  const HistoryPage page = this->newest(*store, kAliceBob, 10);
  ASSERT_EQ(seqs_of(page.messages), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_TRUE(page.messages[0]->deleted);
  EXPECT_EQ(page.messages[0]->text, "");
  EXPECT_NE(page.messages[0]->edited_ms, 0);
  EXPECT_EQ(page.messages[1]->text, "hi");
  const HistoryPage order = this->history(*store, kAliceBob, lifecycle::whole_order());
  ASSERT_EQ(seqs_of(order.messages), range(1, 4));
  EXPECT_EQ(order.messages[2]->kind, chat::EntryKind::edit);
  EXPECT_EQ(order.messages[3]->kind, chat::EntryKind::remove);
  EXPECT_EQ(order.messages[3]->target, 1u);
  HistoryQuery no_tombstones;
  no_tombstones.skip_deleted = true;
  EXPECT_EQ(seqs_of(this->history(*store, kAliceBob, no_tombstones).messages),
            (std::vector<std::uint64_t>{2}));
  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, 4)) << "changes reach the listener in order";
  EXPECT_EQ(this->mark_read(*store, kAliceBob, "bob", 0).last_seq, 4u);
}

TYPED_TEST(StoreContract, ChangesRefusedByTheRulesChangeNothing) {
  using lifecycle::change;
  auto store = this->open();
  this->append(*store, kAliceBob, "alice", "one");
  this->append(*store, kAliceBob, "alice", "two");
  ASSERT_EQ(this->append(*store, change(chat::EntryKind::remove, kAliceBob, "alice", 2)).refusal,
            Refusal::none);  // seq 3
  const auto refusal_of = [&](PendingMessage message) {
    return this->append(*store, std::move(message)).refusal;
  };
  EXPECT_EQ(refusal_of(change(chat::EntryKind::edit, kAliceBob, "bob", 1, "x")),
            Refusal::not_your_message);
  EXPECT_EQ(refusal_of(change(chat::EntryKind::remove, kAliceBob, "bob", 1)),
            Refusal::not_your_message);
  EXPECT_EQ(refusal_of(change(chat::EntryKind::edit, kAliceBob, "alice", 99, "x")),
            Refusal::not_found);
  EXPECT_EQ(refusal_of(change(chat::EntryKind::edit, kAliceBob, "alice", 3, "x")),
            Refusal::not_found)
      << "a change is not a message";
  EXPECT_EQ(refusal_of(change(chat::EntryKind::edit, kAliceBob, "alice", 2, "x")),
            Refusal::deleted);
  EXPECT_EQ(refusal_of(change(chat::EntryKind::remove, kAliceBob, "alice", 2)), Refusal::deleted);
  PendingMessage late = change(chat::EntryKind::edit, kAliceBob, "alice", 1, "x");
  late.edit_window_ms = 1;
  this->next_millisecond(chat::now_ms() + 1);
  EXPECT_EQ(refusal_of(late), Refusal::edit_window_passed);

  const HistoryPage order = this->history(*store, kAliceBob, lifecycle::whole_order());
  EXPECT_EQ(seqs_of(order.messages), range(1, 3)) << "no refusal took a seq";
  EXPECT_EQ(order.messages[0]->text, "one");
  EXPECT_EQ(this->append(*store, kAliceBob, "alice", "three").message->seq, 4u);
}

TYPED_TEST(StoreContract, ARetriedChangeGivesTheFirstAnswer) {
  using lifecycle::change;
  auto store = this->open();
  this->append(*store, kAliceBob, "alice", "one");
  const AppendResult first =
      this->append(*store, change(chat::EntryKind::edit, kAliceBob, "alice", 1, "first", "e-1"));
  ASSERT_EQ(first.refusal, Refusal::none);
  const AppendResult again =
      this->append(*store, change(chat::EntryKind::edit, kAliceBob, "alice", 1, "second", "e-1"));
  ASSERT_EQ(again.error, StoreError::none);
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.message->seq, first.message->seq);
  EXPECT_EQ(this->newest(*store, kAliceBob, 10).messages.at(0)->text, "first");
}

TYPED_TEST(StoreContract, ABlockRefusesTheBlockedUsersMessagesAndEditsUntilUnblocked) {
  using lifecycle::change;
  auto store = this->open();
  this->append(*store, kAliceBob, "bob", "hi alice");
  const AppendResult block =
      this->append(*store, change(chat::EntryKind::block, kAliceBob, "alice", 0));
  ASSERT_EQ(block.refusal, Refusal::none);
  EXPECT_EQ(block.message->seq, 2u);
  EXPECT_EQ(block.message->kind, chat::EntryKind::block);

  EXPECT_EQ(this->append(*store, kAliceBob, "bob", "hello?").refusal, Refusal::blocked);
  EXPECT_EQ(this->append(*store, change(chat::EntryKind::edit, kAliceBob, "bob", 1, "x")).refusal,
            Refusal::blocked);
  EXPECT_EQ(this->append(*store, change(chat::EntryKind::remove, kAliceBob, "bob", 1)).refusal,
            Refusal::none)
      << "a blocked user may still delete what they sent";
  EXPECT_EQ(this->append(*store, kAliceBob, "alice", "bye").message->seq, 4u);
  EXPECT_EQ(this->append(*store, kAliceCarol, "carol", "other chats are not blocked").refusal,
            Refusal::none);

  const AppendResult twice =
      this->append(*store, change(chat::EntryKind::block, kAliceBob, "alice", 0));
  EXPECT_TRUE(twice.duplicate);
  EXPECT_EQ(twice.message->seq, 0u) << "blocking twice takes no seq";

  const ReadMarks marks = this->mark_read(*store, kAliceBob, "alice", 0);
  EXPECT_TRUE(marks.blocks(kAliceBob, "alice"));
  EXPECT_FALSE(marks.blocks(kAliceBob, "bob"));
  const BlockList list = this->template wait<BlockList>(
      [&](auto handler) { store->blocks("alice", Store::BlocksHandler(std::move(handler))); });
  EXPECT_EQ(list.users, std::vector<std::string>{"bob"});
  const BlockList none = this->template wait<BlockList>(
      [&](auto handler) { store->blocks("bob", Store::BlocksHandler(std::move(handler))); });
  EXPECT_TRUE(none.users.empty());

  ASSERT_EQ(this->append(*store, change(chat::EntryKind::unblock, kAliceBob, "alice", 0)).refusal,
            Refusal::none);
  EXPECT_EQ(this->append(*store, kAliceBob, "bob", "thanks").refusal, Refusal::none);
  EXPECT_FALSE(this->mark_read(*store, kAliceBob, "alice", 0).blocks(kAliceBob, "alice"));
}

TYPED_TEST(StoreContract, APurgeRemovesOldEntriesInBoundedStepsAndTheSeqGoesOn) {
  auto store = this->open();
  for (int i = 0; i < 10; ++i) this->append(*store, kAliceBob, "alice", "old " + std::to_string(i));
  this->append(*store, kAliceCarol, "carol", "old too");
  const std::int64_t cutoff = chat::now_ms() + 1;
  this->next_millisecond(cutoff);
  for (int i = 0; i < 3; ++i) this->append(*store, kAliceBob, "bob", "new " + std::to_string(i));

  const auto maintenance = store->make_maintenance();
  std::size_t removed = 0;
  for (int step = 0; step < 100; ++step) {
    const PurgeStep purged = maintenance->purge(cutoff, 4);
    EXPECT_LE(purged.removed, 4u);
    removed += purged.removed;
    if (purged.done) break;
  }
  EXPECT_EQ(removed, 11u);
  EXPECT_EQ(seqs_of(this->newest(*store, kAliceBob, 100).messages), range(11, 13));
  EXPECT_TRUE(this->newest(*store, kAliceCarol, 100).messages.empty());
  EXPECT_EQ(this->mark_read(*store, kAliceBob, "bob", 0).first_seq, 11u);
  EXPECT_EQ(this->append(*store, kAliceBob, "alice", "next").message->seq, 14u);
  EXPECT_EQ(this->append(*store, kAliceCarol, "carol", "next").message->seq, 2u);
}

TYPED_TEST(StoreContract, AnErasureLeavesTombstonesOfOneUserOnly) {
  using lifecycle::change;
  auto store = this->open();
  this->append(*store, kAliceBob, "alice", "secret one");
  this->append(*store, kAliceBob, "bob", "bob's");
  this->append(*store, change(chat::EntryKind::edit, kAliceBob, "alice", 1, "secret edited"));
  this->append(*store, kAliceCarol, "alice", "secret two");
  this->mark_read(*store, kAliceBob, "alice", 2);

  const auto maintenance = store->make_maintenance();
  const auto chats = maintenance->chats_of("alice", "", 10);
  ASSERT_EQ(chats.size(), 2u);
  EraseStep erased;
  for (const auto& chat : chats) {
    for (EraseStep step; !(step = maintenance->erase(chat, "alice", 1)).empty();) {
      EXPECT_EQ(step.messages + step.edits, 1u) << "one row a step";
      erased.messages += step.messages;
      erased.edits += step.edits;
    }
  }
  EXPECT_EQ(erased.messages, 2u);
  EXPECT_EQ(erased.edits, 1u);
  EXPECT_EQ(maintenance->forget_user("alice"), 1u);

  for (const auto& chat : {kAliceBob, kAliceCarol}) {
    for (const auto& entry : this->history(*store, chat, lifecycle::whole_order()).messages) {
      if (entry->sender != "alice") continue;
      EXPECT_EQ(entry->text, "") << chat.str() << " seq " << entry->seq;
      if (entry->kind == chat::EntryKind::message) {
        EXPECT_TRUE(entry->deleted);
      }
    }
  }
  EXPECT_EQ(this->newest(*store, kAliceBob, 10).messages.at(1)->text, "bob's");
  EXPECT_EQ(this->mark_read(*store, kAliceBob, "alice", 0).of(kAliceBob, "alice"), 0u);
  EXPECT_TRUE(this->conversations(*store, "alice", 10).conversations.empty());
  EXPECT_EQ(this->conversations(*store, "bob", 10).conversations.size(), 1u);
}

TYPED_TEST(StoreContract, MaintenanceReadsAUsersChatsAndMessagesInPages) {
  using lifecycle::change;
  auto store = this->open();
  for (int i = 0; i < 5; ++i) this->append(*store, kAliceBob, "bob", std::to_string(i));
  this->append(*store, change(chat::EntryKind::remove, kAliceBob, "bob", 2));
  this->append(*store, kAliceCarol, "alice", "to carol");
  this->append(*store, ChatKey::of("bob", "carol"), "bob", "not alice's");

  const auto maintenance = store->make_maintenance();
  const auto first = maintenance->chats_of("alice", "", 1);
  ASSERT_EQ(first.size(), 1u);
  const auto rest = maintenance->chats_of("alice", first[0].str(), 10);
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_NE(first[0], rest[0]);
  const auto page = maintenance->messages(kAliceBob, 0, 3);
  EXPECT_EQ(seqs_of(page), range(1, 3));
  EXPECT_TRUE(page[1]->deleted) << "tombstones are exported";
  EXPECT_EQ(seqs_of(maintenance->messages(kAliceBob, 3, 10)), range(4, 5))
      << "changes are not exported";
}

}  // namespace
}  // namespace chatd::store
