#include "store/mongo/mongo_store.h"

#include <gtest/gtest.h>

#include <future>

namespace chatd::store::mongo {
namespace {

// A loopback port nothing listens on (the discard port is never served here).
constexpr const char* kNobodyHome = "mongodb://127.0.0.1:9/chat_test?serverSelectionTimeoutMS=200";

TEST(MongoStore, InvalidUriFailsStartUpNamingTheSetting) {
  try {
    MongoStore store(MongoOptions{.uri = "http://not-mongo"}, {});
    FAIL() << "expected MongoError";
  } catch (const MongoError& error) {
    EXPECT_NE(std::string(error.what()).find("MONGO_URI"), std::string::npos) << error.what();
  }
}

TEST(MongoStore, UnacknowledgedWriteConcernIsRefused) {
  EXPECT_THROW(MongoStore(MongoOptions{.uri = "mongodb://127.0.0.1:9/chat?w=0"}, {}), MongoError);
}

TEST(MongoStore, DefaultsToMajorityJournaledWritesAndTheChatDatabase) {
  const Connection connection("mongodb://127.0.0.1:9");
  EXPECT_EQ(connection.database(), "chat");
  EXPECT_EQ(connection.description(), "127.0.0.1:9/chat, w=majority, j=true");
  const Connection explicit_w("mongodb://127.0.0.1:9/other?w=1");
  EXPECT_EQ(explicit_w.description(), "127.0.0.1:9/other, w=1, j=server default");
}

TEST(MongoStore, UnreachableServerMeansNotReadyAndUnavailable) {
  MongoStore store(MongoOptions{.uri = kNobodyHome}, {});
  EXPECT_FALSE(store.ready());

  std::promise<AppendResult> appended;
  store.append(chat::PendingMessage{chat::ChatKey::of("a", "b"), "a", "hi", "", 0},
               [&](AppendResult result) { appended.set_value(std::move(result)); });
  EXPECT_EQ(appended.get_future().get().error, StoreError::unavailable);

  std::promise<HistoryPage> read;
  store.history(chat::ChatKey::of("a", "b"), HistoryQuery{},
                [&](HistoryPage page) { read.set_value(std::move(page)); });
  EXPECT_EQ(read.get_future().get().error, StoreError::unavailable);
  EXPECT_FALSE(store.ready());
}

}  // namespace
}  // namespace chatd::store::mongo
