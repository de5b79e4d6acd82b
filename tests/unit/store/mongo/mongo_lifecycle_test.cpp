// The message lifecycle on the MongoDB store (docs/protocol.md, "A chat's
// order"): edits, deletes, blocks and erasures as entries of a chat's order,
// the readers' view of them, the maintenance, and what two instances on one
// database do. Needs a server: CHATD_TEST_MONGO_URI (scripts/with-ferretdb).

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "../store_test_support.h"
#include "store/mongo/bson_mapping.h"
#include "store/mongo/mongo_store.h"

namespace chatd::store::mongo {
namespace {
using namespace test_support;
using chat::EntryKind;

PendingMessage change(const ChatKey& chat, std::string sender, EntryKind kind,
                      std::uint64_t target = 0, std::string text = {}, std::string client_id = {}) {
  PendingMessage message = pending(chat, std::move(sender), std::move(text), std::move(client_id));
  message.kind = kind;
  message.target = target;
  return message;
}

class MongoLifecycle : public StoreTest {
 protected:
  void SetUp() override {
    const char* base = std::getenv("CHATD_TEST_MONGO_URI");
    if (base == nullptr || *base == '\0') {
      GTEST_SKIP() << "CHATD_TEST_MONGO_URI is not set (scripts/with-ferretdb sets it)";
    }
    static std::atomic<int> counter{0};
    const std::string database =
        "chatd_lifecycle_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    std::string uri = base;
    const std::size_t query = uri.find('?');
    const std::string options = query == std::string::npos ? "" : uri.substr(query);
    uri = uri.substr(0, query);
    const std::size_t hosts = uri.find("://");
    const std::size_t path = uri.find('/', hosts == std::string::npos ? 0 : hosts + 3);
    uri_ = uri.substr(0, path) + "/" + database + options;
  }

  /// A store on this test's database, ready; a second one is another instance.
  std::unique_ptr<MongoStore> open(CommitListener listener = {}) {
    auto store = std::make_unique<MongoStore>(MongoOptions{.uri = uri_}, std::move(listener));
    const auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (!store->ready() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE(store->ready());
    return store;
  }

  HistoryPage everything(Store& store, const ChatKey& chat) {
    HistoryQuery query;
    query.limit = 100;
    query.oldest_first = true;
    query.messages_only = false;
    return history(store, chat, query);
  }

  ReadMarks read_marks(Store& store, const ChatKey& chat) {
    return wait<ReadMarks>(
        [&](auto handler) { store.read_marks(chat, Store::ReadMarksHandler(std::move(handler))); });
  }

  BlockList blocks(Store& store, const std::string& user) {
    return wait<BlockList>(
        [&](auto handler) { store.blocks(user, Store::BlocksHandler(std::move(handler))); });
  }

  std::string uri_;
};

// ---------------------------------------------------------------------------
// Edits and deletes
// ---------------------------------------------------------------------------

TEST_F(MongoLifecycle, AnEditAndADeleteTakeSeqsAndChangeTheMessage) {
  CommitLog log;
  auto store = open(log.listener());
  const AppendResult hi = append(*store, kAliceBob, "alice", "hi");
  ASSERT_EQ(hi.error, StoreError::none);
  append(*store, kAliceBob, "bob", "hello");

  const AppendResult edit = append(*store, change(kAliceBob, "alice", EntryKind::edit, 1, "hi!"));
  ASSERT_EQ(edit.error, StoreError::none);
  ASSERT_TRUE(edit.message);
  EXPECT_EQ(edit.refusal, Refusal::none);
  EXPECT_EQ(edit.message->seq, 3u);
  EXPECT_EQ(edit.message->kind, EntryKind::edit);
  EXPECT_EQ(edit.message->target, 1u);
  EXPECT_EQ(edit.message->target_id, hi.message->id);
  EXPECT_EQ(edit.message->text, "hi!");

  PendingMessage by_id = change(kAliceBob, "bob", EntryKind::remove);
  by_id.target_id = append(*store, kAliceBob, "bob", "oops").message->id;  // seq 4
  const AppendResult remove = append(*store, by_id);
  ASSERT_TRUE(remove.message);
  EXPECT_EQ(remove.message->seq, 5u);
  EXPECT_EQ(remove.message->target, 4u);
  EXPECT_EQ(remove.message->text, "");

  // A history page: messages only, in their current state.
  const HistoryPage page = newest(*store, kAliceBob, 10);
  ASSERT_EQ(page.error, StoreError::none);
  EXPECT_EQ(seqs_of(page.messages), (std::vector<std::uint64_t>{1, 2, 4}));
  EXPECT_EQ(page.messages[0]->text, "hi!");
  EXPECT_EQ(page.messages[0]->edited_ms, edit.message->timestamp_ms);
  EXPECT_FALSE(page.messages[0]->deleted);
  EXPECT_EQ(page.messages[1]->edited_ms, 0);
  EXPECT_TRUE(page.messages[2]->deleted);
  EXPECT_EQ(page.messages[2]->text, "");

  // A v1 history leaves the tombstone out.
  HistoryQuery v1;
  v1.limit = 10;
  v1.skip_deleted = true;
  EXPECT_EQ(seqs_of(history(*store, kAliceBob, v1).messages), range(1, 2));

  // A resume: every entry, changes too, in the chat's one order.
  const HistoryPage all = everything(*store, kAliceBob);
  EXPECT_EQ(seqs_of(all.messages), range(1, 5));
  EXPECT_EQ(all.messages[2]->kind, EntryKind::edit);
  EXPECT_EQ(all.messages[4]->kind, EntryKind::remove);
  EXPECT_EQ(all.messages[4]->target_id, by_id.target_id);
  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, 5)) << "changes are announced like messages";
}

TEST_F(MongoLifecycle, TheChatsRulesRefuseChangesAndStoreNothing) {
  CommitLog log;
  auto store = open(log.listener());
  append(*store, kAliceBob, "alice", "mine");                                             // 1
  append(*store, kAliceBob, "alice", "gone");                                             // 2
  ASSERT_TRUE(append(*store, change(kAliceBob, "alice", EntryKind::remove, 2)).message);  // 3

  const auto refusal_of = [&](PendingMessage message) {
    const AppendResult result = append(*store, std::move(message));
    EXPECT_EQ(result.error, StoreError::none);
    EXPECT_EQ(result.message, nullptr);
    return result.refusal;
  };
  EXPECT_EQ(refusal_of(change(kAliceBob, "bob", EntryKind::edit, 1, "x")),
            Refusal::not_your_message);
  EXPECT_EQ(refusal_of(change(kAliceBob, "bob", EntryKind::remove, 1)), Refusal::not_your_message);
  EXPECT_EQ(refusal_of(change(kAliceBob, "alice", EntryKind::edit, 2, "x")), Refusal::deleted);
  EXPECT_EQ(refusal_of(change(kAliceBob, "alice", EntryKind::remove, 2)), Refusal::deleted);
  EXPECT_EQ(refusal_of(change(kAliceBob, "alice", EntryKind::edit, 3, "x")), Refusal::not_found)
      << "a change entry is not a message";
  EXPECT_EQ(refusal_of(change(kAliceBob, "alice", EntryKind::edit, 99, "x")), Refusal::not_found);
  EXPECT_EQ(refusal_of(change(kAliceCarol, "alice", EntryKind::edit, 1, "x")), Refusal::not_found)
      << "another chat's seq";
  PendingMessage bad_id = change(kAliceBob, "alice", EntryKind::edit, 0, "x");
  bad_id.target_id = "not-an-id";
  EXPECT_EQ(refusal_of(bad_id), Refusal::not_found);
  bad_id.target_id = "0123456789abcdef01234567";
  EXPECT_EQ(refusal_of(bad_id), Refusal::not_found);

  PendingMessage late = change(kAliceBob, "alice", EntryKind::edit, 1, "late");
  late.edit_window_ms = 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(refusal_of(late), Refusal::edit_window_passed);
  late.kind = EntryKind::remove;  // deletes have no window
  EXPECT_TRUE(append(*store, late).message);

  EXPECT_EQ(seqs_of(everything(*store, kAliceBob).messages), range(1, 4)) << "no seq taken";
  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, 4));
  EXPECT_EQ(newest(*store, kAliceBob, 10).messages.at(0)->text, "") << "the delete applied";
}

TEST_F(MongoLifecycle, ARetriedChangeGivesTheFirstAckAndChangesNothing) {
  CommitLog log;
  auto store = open(log.listener());
  append(*store, kAliceBob, "alice", "one");
  const AppendResult first =
      append(*store, change(kAliceBob, "alice", EntryKind::edit, 1, "two", "e-1"));
  ASSERT_TRUE(first.message);
  ASSERT_TRUE(
      append(*store, change(kAliceBob, "alice", EntryKind::edit, 1, "three", "e-2")).message);

  const AppendResult retry =
      append(*store, change(kAliceBob, "alice", EntryKind::edit, 1, "two", "e-1"));
  ASSERT_TRUE(retry.message);
  EXPECT_TRUE(retry.duplicate);
  EXPECT_EQ(retry.message->seq, first.message->seq);
  EXPECT_EQ(retry.message->target, 1u);
  EXPECT_EQ(newest(*store, kAliceBob, 1).messages.at(0)->text, "three")
      << "the retry did not bring the older edit back";
  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, 3));
}

// ---------------------------------------------------------------------------
// Blocks
// ---------------------------------------------------------------------------

TEST_F(MongoLifecycle, ABlockRefusesThePeersSendsAndEditsUntilUnblocked) {
  CommitLog log;
  auto store = open(log.listener());
  append(*store, kAliceBob, "bob", "hi");  // 1

  const AppendResult block = append(*store, change(kAliceBob, "alice", EntryKind::block));
  ASSERT_TRUE(block.message);
  EXPECT_FALSE(block.duplicate);
  EXPECT_EQ(block.message->seq, 2u);
  EXPECT_EQ(block.message->kind, EntryKind::block);
  EXPECT_EQ(block.message->sender, "alice");

  const AppendResult again = append(*store, change(kAliceBob, "alice", EntryKind::block));
  ASSERT_TRUE(again.message);
  EXPECT_TRUE(again.duplicate) << "blocking twice changes nothing";
  EXPECT_EQ(again.message->seq, 0u);
  EXPECT_EQ(again.message->kind, EntryKind::block);

  EXPECT_EQ(append(*store, kAliceBob, "bob", "let me in").refusal, Refusal::blocked);
  EXPECT_EQ(append(*store, change(kAliceBob, "bob", EntryKind::edit, 1, "x")).refusal,
            Refusal::blocked);
  EXPECT_TRUE(append(*store, change(kAliceBob, "bob", EntryKind::remove, 1)).message)
      << "deletes are allowed";                                             // 3
  EXPECT_TRUE(append(*store, kAliceBob, "alice", "I still send").message);  // 4
  EXPECT_TRUE(append(*store, kAliceCarol, "carol", "other chat").message);

  ReadMarks marks = read_marks(*store, kAliceBob);
  ASSERT_EQ(marks.error, StoreError::none);
  EXPECT_TRUE(marks.blocks(kAliceBob, "alice"));
  EXPECT_FALSE(marks.blocks(kAliceBob, "bob"));
  EXPECT_EQ(marks.first_seq, 1u);
  EXPECT_EQ(marks.last_seq, 4u) << "changes count";
  EXPECT_EQ(blocks(*store, "alice").users, std::vector<std::string>{"bob"});
  EXPECT_TRUE(blocks(*store, "bob").users.empty());

  // A chat that has no document yet can be blocked too.
  ASSERT_TRUE(
      append(*store, change(ChatKey::of("alice", "dave"), "alice", EntryKind::block)).message);
  EXPECT_EQ(blocks(*store, "alice").users, (std::vector<std::string>{"bob", "dave"}));
  EXPECT_EQ(append(*store, ChatKey::of("alice", "dave"), "dave", "hi").refusal, Refusal::blocked);

  const AppendResult unblock = append(*store, change(kAliceBob, "alice", EntryKind::unblock));
  ASSERT_TRUE(unblock.message);
  EXPECT_EQ(unblock.message->seq, 5u);
  EXPECT_TRUE(append(*store, change(kAliceBob, "alice", EntryKind::unblock)).duplicate);
  EXPECT_TRUE(append(*store, kAliceBob, "bob", "thanks").message);  // 6
  EXPECT_FALSE(read_marks(*store, kAliceBob).blocks(kAliceBob, "alice"));
  EXPECT_EQ(blocks(*store, "alice").users, std::vector<std::string>{"dave"});
  EXPECT_EQ(seqs_of(everything(*store, kAliceBob).messages), range(1, 6));
  EXPECT_EQ(log.seqs_of_chat(kAliceBob), range(1, 6));
}

TEST_F(MongoLifecycle, OneBatchAppliesItsChangesInOrder) {
  Gate gate;
  auto store = open([&](std::span<const MessagePtr>) { gate.pass(); });
  const OpenOnExit open_on_exit{gate};
  auto completions = std::make_shared<Completions>();
  append_async(*store, pending(kAliceBob, "bob", "hold"), completions, 0);
  ASSERT_TRUE(gate.wait_for_arrival());  // the rest wait together for the next commit
  const std::vector<PendingMessage> batch = {
      pending(kAliceBob, "bob", "before"),                          // 2
      change(kAliceBob, "alice", EntryKind::block),                 // 3
      pending(kAliceBob, "bob", "refused", "c-1"),                  //
      pending(kAliceBob, "bob", "refused again", "c-1"),            //
      pending(kAliceCarol, "carol", "unaffected"),                  // carol 1
      change(kAliceBob, "bob", EntryKind::edit, 1, "refused too"),  //
      change(kAliceBob, "bob", EntryKind::remove, 1),               // 4
      change(kAliceBob, "alice", EntryKind::unblock),               // 5
      pending(kAliceBob, "bob", "after"),                           // 6
      change(kAliceBob, "alice", EntryKind::edit, 1, "x"),          // not alice's
  };
  for (std::size_t i = 0; i < batch.size(); ++i) append_async(*store, batch[i], completions, i + 1);
  gate.open();
  ASSERT_TRUE(completions->wait_for(batch.size() + 1));
  const auto results = completions->results();
  const auto seq_of = [&](std::size_t index) {
    const AppendResult& result = results.at(index);
    EXPECT_EQ(result.error, StoreError::none) << index;
    return result.message ? result.message->seq : 0;
  };
  EXPECT_EQ(seq_of(1), 2u);
  EXPECT_EQ(seq_of(2), 3u);
  EXPECT_EQ(results.at(3).refusal, Refusal::blocked);
  EXPECT_EQ(results.at(4).refusal, Refusal::blocked) << "a repeat is answered as the first";
  EXPECT_EQ(seq_of(5), 1u);
  EXPECT_EQ(results.at(6).refusal, Refusal::blocked);
  EXPECT_EQ(seq_of(7), 4u);
  EXPECT_EQ(seq_of(8), 5u);
  EXPECT_EQ(seq_of(9), 6u);
  EXPECT_EQ(results.at(10).refusal, Refusal::not_your_message);

  const HistoryPage all = everything(*store, kAliceBob);
  EXPECT_EQ(seqs_of(all.messages), range(1, 6));
  EXPECT_TRUE(all.messages.at(0)->deleted);
  EXPECT_EQ(all.messages.at(5)->text, "after");
}

// ---------------------------------------------------------------------------
// Conversations and receipts
// ---------------------------------------------------------------------------

TEST_F(MongoLifecycle, ConversationsCountMessagesOnly) {
  auto store = open();
  append(*store, kAliceBob, "bob", "b1");                                                    // 1
  append(*store, kAliceBob, "bob", "b2");                                                    // 2
  append(*store, kAliceBob, "bob", "b3");                                                    // 3
  ASSERT_TRUE(append(*store, change(kAliceBob, "bob", EntryKind::remove, 2)).message);       // 4
  ASSERT_TRUE(append(*store, change(kAliceBob, "bob", EntryKind::edit, 3, "b3!")).message);  // 5
  ASSERT_TRUE(append(*store, change(kAliceBob, "alice", EntryKind::block)).message);         // 6
  // Only a block: no message to show.
  ASSERT_TRUE(append(*store, change(kAliceCarol, "alice", EntryKind::block)).message);

  ConversationList list = conversations(*store, "alice", 10);
  ASSERT_EQ(list.error, StoreError::none);
  ASSERT_EQ(list.conversations.size(), 1u);
  EXPECT_EQ(list.conversations[0].chat, kAliceBob);
  EXPECT_EQ(list.conversations[0].last->seq, 3u) << "the newest message, not a change";
  EXPECT_EQ(list.conversations[0].last->text, "b3!");
  EXPECT_EQ(list.conversations[0].unread, 2u) << "b1 and b3; b2 is deleted, changes are none";
  mark_read(*store, kAliceBob, "alice", 1);
  EXPECT_EQ(conversations(*store, "alice", 10).conversations.at(0).unread, 1u);
}

TEST_F(MongoLifecycle, ForgettingAUserHidesTheirChatsUntilTheNextMessage) {
  auto store = open();
  append(*store, kAliceBob, "bob", "b1");
  append(*store, kAliceCarol, "carol", "c1");
  mark_read(*store, kAliceBob, "alice", 1);
  mark_read(*store, kAliceCarol, "alice", 1);
  mark_read(*store, kAliceBob, "bob", 1);
  auto maintenance = store->make_maintenance();

  EXPECT_EQ(maintenance->forget_user("alice"), 2u);
  EXPECT_TRUE(conversations(*store, "alice", 10).conversations.empty());
  EXPECT_EQ(conversations(*store, "bob", 10).conversations.size(), 1u) << "only alice's list";
  ReadMarks marks = mark_read(*store, kAliceBob, "bob", 0);
  EXPECT_EQ(marks.of(kAliceBob, "alice"), 0u);
  EXPECT_EQ(marks.of(kAliceBob, "bob"), 1u);

  // A change is not a new message; a message is.
  ASSERT_TRUE(append(*store, change(kAliceBob, "bob", EntryKind::erase)).message);
  EXPECT_TRUE(conversations(*store, "alice", 10).conversations.empty());
  append(*store, kAliceBob, "bob", "b2");
  const ConversationList list = conversations(*store, "alice", 10);
  ASSERT_EQ(list.conversations.size(), 1u);
  EXPECT_EQ(list.conversations[0].chat, kAliceBob);
  EXPECT_EQ(list.conversations[0].unread, 2u) << "alice's receipt is gone";
}

// ---------------------------------------------------------------------------
// Maintenance
// ---------------------------------------------------------------------------

TEST_F(MongoLifecycle, ErasureMakesTombstonesOfAUsersMessagesAndEdits) {
  auto store = open();
  append(*store, kAliceBob, "alice", "a1");                                                    // 1
  append(*store, kAliceBob, "bob", "b1");                                                      // 2
  append(*store, kAliceBob, "alice", "a2");                                                    // 3
  ASSERT_TRUE(append(*store, change(kAliceBob, "alice", EntryKind::edit, 3, "a2!")).message);  // 4
  append(*store, kAliceCarol, "alice", "to carol");
  auto maintenance = store->make_maintenance();

  EXPECT_EQ(maintenance->chats_of("alice", "", 10), (std::vector<ChatKey>{kAliceBob, kAliceCarol}));
  EXPECT_EQ(maintenance->chats_of("alice", kAliceBob.str(), 10), std::vector<ChatKey>{kAliceCarol});
  EXPECT_EQ(maintenance->chats_of("alice", "", 1), std::vector<ChatKey>{kAliceBob});
  EXPECT_EQ(maintenance->chats_of("bob", "", 10), std::vector<ChatKey>{kAliceBob});

  const store::EraseStep first = maintenance->erase(kAliceBob, "alice", 2);
  EXPECT_EQ(first.messages, 2u);
  EXPECT_EQ(first.edits, 0u);
  const store::EraseStep second = maintenance->erase(kAliceBob, "alice", 2);
  EXPECT_EQ(second.messages, 0u);
  EXPECT_EQ(second.edits, 1u);
  EXPECT_TRUE(maintenance->erase(kAliceBob, "alice", 2).empty()) << "none left";
  const HistoryPage all = everything(*store, kAliceBob);
  ASSERT_EQ(all.messages.size(), 4u);
  EXPECT_TRUE(all.messages[0]->deleted);
  EXPECT_EQ(all.messages[0]->text, "");
  EXPECT_EQ(all.messages[1]->text, "b1");
  EXPECT_FALSE(all.messages[1]->deleted);
  EXPECT_TRUE(all.messages[2]->deleted);
  EXPECT_EQ(all.messages[3]->kind, EntryKind::edit);
  EXPECT_EQ(all.messages[3]->text, "") << "the edit's text is gone too";
  EXPECT_EQ(newest(*store, kAliceCarol, 10).messages.at(0)->text, "to carol")
      << "one chat at a time";

  const auto messages = maintenance->messages(kAliceBob, 1, 10);
  EXPECT_EQ(seqs_of(messages), (std::vector<std::uint64_t>{2, 3})) << "messages and tombstones";
  EXPECT_EQ(seqs_of(maintenance->messages(kAliceBob, 0, 1)), std::vector<std::uint64_t>{1});
}

TEST_F(MongoLifecycle, RetentionRemovesTheOldestEntriesInStepsAndSeqsGoOn) {
  auto store = open();
  for (int i = 0; i < 5; ++i) append(*store, kAliceBob, "alice", std::to_string(i));          // 1-5
  ASSERT_TRUE(append(*store, change(kAliceBob, "alice", EntryKind::edit, 5, "4!")).message);  // 6
  append(*store, kAliceCarol, "carol", "c");
  const std::int64_t cut = chat::now_ms() + 1;
  while (chat::now_ms() <= cut) std::this_thread::yield();
  append(*store, kAliceBob, "bob", "kept");  // 7
  auto maintenance = store->make_maintenance();

  PurgeStep step = maintenance->purge(cut, 4);
  EXPECT_EQ(step.removed, 4u);
  EXPECT_FALSE(step.done);
  EXPECT_EQ(read_marks(*store, kAliceBob).first_seq, 5u) << "the oldest first";
  step = maintenance->purge(cut, 4);
  EXPECT_EQ(step.removed, 3u);
  EXPECT_TRUE(step.done);
  step = maintenance->purge(cut, 4);
  EXPECT_EQ(step.removed, 0u);
  EXPECT_TRUE(step.done);

  EXPECT_EQ(seqs_of(everything(*store, kAliceBob).messages), std::vector<std::uint64_t>{7});
  EXPECT_EQ(read_marks(*store, kAliceBob).first_seq, 7u);
  EXPECT_EQ(read_marks(*store, kAliceCarol).first_seq, 0u) << "none left";
  EXPECT_EQ(append(*store, kAliceBob, "bob", "next").message->seq, 8u);
  EXPECT_EQ(append(*store, kAliceCarol, "carol", "next").message->seq, 2u);
}

// ---------------------------------------------------------------------------
// Two instances on one database
// ---------------------------------------------------------------------------

TEST_F(MongoLifecycle, AnotherInstancesBlockHoldsForTheNextBatch) {
  auto first = open();
  auto second = open();
  ASSERT_TRUE(append(*first, kAliceBob, "bob", "hi").message);
  ASSERT_TRUE(append(*second, change(kAliceBob, "alice", EntryKind::block)).message);
  EXPECT_EQ(append(*first, kAliceBob, "bob", "still there?").refusal, Refusal::blocked);
  // The first instance has not seen the block in its own batches: blocking
  // again there changes nothing.
  EXPECT_TRUE(append(*first, change(kAliceBob, "alice", EntryKind::block)).duplicate);
  ASSERT_TRUE(append(*first, change(kAliceBob, "alice", EntryKind::unblock)).message);
  EXPECT_TRUE(append(*second, change(kAliceBob, "alice", EntryKind::unblock)).duplicate)
      << "the second instance believed alice still blocked";
  EXPECT_TRUE(append(*second, kAliceBob, "bob", "thanks").message);
  // Each instance reserved a seq for what the blocks as it last saw them let
  // through; the reservation showed them otherwise, and the seq was filled.
  const auto all = everything(*first, kAliceBob).messages;
  EXPECT_EQ(seqs_of(all), range(1, 6)) << "one order without a gap";
  EXPECT_EQ(all.at(2)->kind, EntryKind::filler);
  EXPECT_EQ(all.at(4)->kind, EntryKind::filler);
}

TEST_F(MongoLifecycle, AChangeIsRenumberedAfterAnEntryTheWriterDidNotKnowOf) {
  auto store = open();
  append(*store, kAliceBob, "alice", "one");  // 1
  // Another instance's entries, stored before its `chats` update: only the
  // unique {chat, seq} index tells this writer that seq 2 and 4 are taken.
  const Connection connection(uri_);
  const PooledClient client(connection.pool());
  const Collection messages = client.collection(connection.database(), kMessages);
  const auto sneak_in = [&](std::uint64_t seq) {
    chat::Message other(kAliceBob);
    other.seq = seq;
    other.id = chat::make_message_id(chat::now_ms());
    other.sender = "bob";
    other.text = "from elsewhere";
    other.timestamp_ms = chat::now_ms();
    Bson document;
    append_message_document(document.get(), other);
    bson_error_t error;
    ASSERT_TRUE(
        mongoc_collection_insert_one(messages.get(), document.get(), nullptr, nullptr, &error))
        << error.message;
  };
  sneak_in(2);
  const AppendResult edit = append(*store, change(kAliceBob, "alice", EntryKind::edit, 1, "1!"));
  ASSERT_TRUE(edit.message);
  EXPECT_EQ(edit.message->seq, 3u);
  EXPECT_EQ(newest(*store, kAliceBob, 10).messages.at(0)->text, "1!") << "applied once stored";
  sneak_in(4);
  const AppendResult block = append(*store, change(kAliceBob, "alice", EntryKind::block));
  ASSERT_TRUE(block.message);
  EXPECT_EQ(block.message->seq, 5u);
  EXPECT_EQ(seqs_of(everything(*store, kAliceBob).messages), range(1, 5));
}

// What BatchWriter::store_block relies on when another instance changed the
// block since the batch read it.
TEST_F(MongoLifecycle, TheBlockUpdateTellsWhetherItChangesTheState) {
  auto store = open();  // creates the database and its indexes
  const Connection connection(uri_);
  const PooledClient client(connection.pool());
  const Collection chats = client.collection(connection.database(), kChats);
  struct Outcome {
    bool ok;
    std::uint32_t code;
    std::int64_t changed;
  };
  const auto run = [&](bool blocking) {
    Bson selector, update, options, reply;
    append_block_update(selector.get(), update.get(), kAliceBob, "alice", blocking);
    bson_append_bool(options.get(), "upsert", -1, blocking);
    bson_error_t error{};
    const bool ok = mongoc_collection_update_one(chats.get(), selector.get(), update.get(),
                                                 options.get(), reply.get(), &error);
    return Outcome{ok, ok ? 0 : error.code,
                   integer_field(reply.get(), "matchedCount").value_or(0) +
                       integer_field(reply.get(), "upsertedCount").value_or(0)};
  };
  Outcome outcome = run(true);
  EXPECT_TRUE(outcome.ok);
  EXPECT_EQ(outcome.changed, 1) << "a chat without a document gets one";
  outcome = run(true);
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.code, static_cast<std::uint32_t>(kDuplicateKey)) << "blocks already";
  outcome = run(false);
  EXPECT_TRUE(outcome.ok);
  EXPECT_EQ(outcome.changed, 1);
  outcome = run(false);
  EXPECT_TRUE(outcome.ok);
  EXPECT_EQ(outcome.changed, 0) << "does not block";
  outcome = run(true);
  EXPECT_TRUE(outcome.ok);
  EXPECT_EQ(outcome.changed, 1) << "an existing document";
  EXPECT_EQ(blocks(*store, "alice").users, std::vector<std::string>{"bob"});
  EXPECT_TRUE(read_marks(*store, kAliceBob).blocks(kAliceBob, "alice"));
}

TEST_F(MongoLifecycle, ChangesAreRenumberedAfterAnotherInstancesEntries) {
  auto first = open();
  auto second = open();
  append(*first, kAliceBob, "alice", "one");  // 1: the first instance knows seq 1
  append(*second, kAliceBob, "bob", "two");   // 2
  // load_chats reads last_seq = 2 from `chats`; the seq conflict path is
  // taken when `chats` lags too (see the next test), here it must not be.
  const AppendResult edit = append(*first, change(kAliceBob, "alice", EntryKind::edit, 1, "1!"));
  ASSERT_TRUE(edit.message);
  EXPECT_EQ(edit.message->seq, 3u);
  EXPECT_EQ(append(*second, kAliceBob, "bob", "three").message->seq, 4u);
  EXPECT_EQ(seqs_of(everything(*second, kAliceBob).messages), range(1, 4));
}

TEST_F(MongoLifecycle, RetentionDoesNotLetALaggingInstanceReuseSeqs) {
  auto first = open();
  auto second = open();
  for (int i = 0; i < 3; ++i) append(*first, kAliceBob, "alice", "a");  // 1-3, cached by first
  for (int i = 0; i < 3; ++i) append(*second, kAliceBob, "bob", "b");   // 4-6
  const std::int64_t cut = chat::now_ms() + 1;
  while (chat::now_ms() <= cut) std::this_thread::yield();
  auto maintenance = first->make_maintenance();
  EXPECT_EQ(maintenance->purge(cut, 100).removed, 6u);
  // No entry is left for the unique index to catch a stale seq with.
  EXPECT_EQ(append(*first, kAliceBob, "alice", "after").message->seq, 7u);
}

}  // namespace
}  // namespace chatd::store::mongo
