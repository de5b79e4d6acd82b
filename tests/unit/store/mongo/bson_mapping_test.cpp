#include "store/mongo/bson_mapping.h"

#include <gtest/gtest.h>

#include "store/mongo/batch_writer.h"

namespace chatd::store::mongo {
namespace {

chat::Message sample_message() {
  chat::Message message(chat::ChatKey::of("bob", "alice"));
  message.seq = 42;
  message.id = "6924f3a1c0ffee0000000001";
  message.sender = "alice";
  message.text = "hi \"bob\" \xC3\xA9";
  message.timestamp_ms = 1'795'000'000'123;
  return message;
}

TEST(BsonMapping, MessageDocumentHasTheSchemaFields) {
  Bson document;
  append_message_document(document.get(), sample_message());
  EXPECT_EQ(document.json(),
            R"({ "_id" : { "$oid" : "6924f3a1c0ffee0000000001" }, "chat" : "5:alice:bob", )"
            R"("seq" : 42, "sender" : "alice", "text" : "hi \"bob\" é", )"
            R"("ts" : { "$date" : "2026-11-18T11:06:40.123Z" } })");
}

TEST(BsonMapping, MessageRoundTrips) {
  chat::Message original = sample_message();
  original.client_id = "c-1";
  Bson document;
  append_message_document(document.get(), original);
  const auto read = message_from_document(document.get());
  ASSERT_TRUE(read);
  EXPECT_EQ(read->chat, original.chat);
  EXPECT_EQ(read->seq, 42u);
  EXPECT_EQ(read->id, original.id);
  EXPECT_EQ(read->sender, "alice");
  EXPECT_EQ(read->text, original.text);
  EXPECT_EQ(read->timestamp_ms, original.timestamp_ms);
  EXPECT_EQ(read->client_id, "c-1");
}

TEST(BsonMapping, EmptyClientIdIsLeftOutSoThePartialIndexSkipsIt) {
  Bson document;
  append_message_document(document.get(), sample_message());
  EXPECT_FALSE(utf8_field(document.get(), "client_id"));
  EXPECT_EQ(message_from_document(document.get())->client_id, "");
}

TEST(BsonMapping, ForeignDocumentsAreNotMessages) {
  Bson no_id;
  append_utf8(no_id.get(), "chat", "5:alice:bob");
  EXPECT_FALSE(message_from_document(no_id.get()));

  Bson old_chat_id;  // the old service's "a_b" is not a chat key
  append_id_filter(old_chat_id.get(), "6924f3a1c0ffee0000000001");
  append_utf8(old_chat_id.get(), "chat", "alice_bob");
  bson_append_int64(old_chat_id.get(), "seq", -1, 1);
  append_utf8(old_chat_id.get(), "sender", "alice");
  append_utf8(old_chat_id.get(), "text", "hi");
  EXPECT_FALSE(message_from_document(old_chat_id.get()));
}

TEST(BsonMapping, HistoryPageQueriesTheNewestByDefault) {
  Bson filter, options;
  HistoryQuery query;
  query.limit = 100;
  append_history_filter(filter.get(), chat::ChatKey::of("a", "b"), query);
  append_history_options(options.get(), query);
  EXPECT_EQ(filter.json(), R"({ "chat" : "1:a:b", "seq" : { "$gt" : 0 }, )"
                           R"("kind" : { "$in" : [ null, 0 ] } })")
      << "messages only: a page never holds changes";
  EXPECT_EQ(options.json(), R"({ "sort" : { "seq" : -1 }, "limit" : 101 })");
}

TEST(BsonMapping, AV1HistoryLeavesTombstonesOut) {
  Bson filter;
  HistoryQuery query;
  query.skip_deleted = true;
  append_history_filter(filter.get(), chat::ChatKey::of("a", "b"), query);
  EXPECT_EQ(filter.json(), R"({ "chat" : "1:a:b", "seq" : { "$gt" : 0 }, )"
                           R"("kind" : { "$in" : [ null, 0 ] }, "deleted" : { "$ne" : true } })");
}

TEST(BsonMapping, ResumeQueriesTheOldestAfterASeq) {
  Bson filter, options;
  HistoryQuery query;
  query.after_seq = 7;
  query.before_seq = 20;
  query.limit = 5;
  query.oldest_first = true;
  query.messages_only = false;  // a resume: changes too
  append_history_filter(filter.get(), chat::ChatKey::of("a", "b"), query);
  append_history_options(options.get(), query);
  EXPECT_EQ(filter.json(), R"({ "chat" : "1:a:b", "seq" : { "$gt" : 7, "$lt" : 20 } })");
  EXPECT_EQ(options.json(), R"({ "sort" : { "seq" : 1 }, "limit" : 6 })");
}

TEST(BsonMapping, ReservationAddsToLastSeqWithTheChatsActivity) {
  Bson update;
  append_chat_reservation(update.get(), chat::ChatKey::of("bob", "alice"), 9, 1000, std::nullopt);
  EXPECT_EQ(
      update.json(),
      R"({ "$setOnInsert" : { "participants" : [ "alice", "bob" ] }, "$inc" : { "last_seq" : 9 }, )"
      R"("$max" : { "last_activity" : { "$date" : "1970-01-01T00:00:01Z" } }, )"
      R"("$unset" : { "hidden_for" : "" } })")
      << "a new message shows the chat again to a forgotten user";
}

TEST(BsonMapping, ReservationOfChangesOnlyIsNoActivityAndCarriesTheBlock) {
  Bson blocking, unblocking;
  append_chat_reservation(blocking.get(), chat::ChatKey::of("bob", "alice"), 2, std::nullopt,
                          std::pair<std::string_view, bool>("bob", true));
  EXPECT_EQ(blocking.json(),
            R"({ "$setOnInsert" : { "participants" : [ "alice", "bob" ] }, )"
            R"("$inc" : { "last_seq" : 2 }, "$addToSet" : { "blocked_by" : "bob" } })");
  append_chat_reservation(unblocking.get(), chat::ChatKey::of("bob", "alice"), 1, std::nullopt,
                          std::pair<std::string_view, bool>("bob", false));
  EXPECT_EQ(unblocking.json(),
            R"({ "$setOnInsert" : { "participants" : [ "alice", "bob" ] }, )"
            R"("$inc" : { "last_seq" : 1 }, "$pull" : { "blocked_by" : "bob" } })");
}

TEST(BsonMapping, FillerRoundTrips) {
  const auto filler = make_filler(chat::ChatKey::of("a", "b"), 12, 5000);
  Bson document;
  append_message_document(document.get(), *filler);
  const auto read = message_from_document(document.get());
  ASSERT_TRUE(read) << "a filler reads back (it holds its seq in the order)";
  EXPECT_EQ(read->kind, chat::EntryKind::filler);
  EXPECT_EQ(read->seq, 12u);
  EXPECT_TRUE(read->sender.empty());
}

TEST(BsonMapping, ChangeRoundTrips) {
  chat::Message original = sample_message();
  original.kind = chat::EntryKind::edit;
  original.target = 40;
  original.target_id = "6924f3a1c0ffee0000000002";
  Bson document;
  append_message_document(document.get(), original);
  EXPECT_EQ(integer_field(document.get(), "kind"), 1);
  const auto read = message_from_document(document.get());
  ASSERT_TRUE(read);
  EXPECT_EQ(read->kind, chat::EntryKind::edit);
  EXPECT_EQ(read->target, 40u);
  EXPECT_EQ(read->target_id, original.target_id);
  EXPECT_EQ(read->edited_ms, 0);
  EXPECT_FALSE(read->deleted);
}

TEST(BsonMapping, AMessagesStateRoundTrips) {
  chat::Message original = sample_message();
  original.edited_ms = 1'795'000'000'999;
  original.deleted = true;
  Bson document;
  append_message_document(document.get(), original);
  EXPECT_FALSE(utf8_field(document.get(), "kind")) << "a message has no kind field";
  EXPECT_EQ(date_field(document.get(), "edited_at"), original.edited_ms);
  const auto read = message_from_document(document.get());
  ASSERT_TRUE(read);
  EXPECT_EQ(read->kind, chat::EntryKind::message);
  EXPECT_EQ(read->edited_ms, original.edited_ms);
  EXPECT_TRUE(read->deleted);
}

TEST(BsonMapping, ALegacyDocumentIsAMessageAsItWas) {
  Bson legacy;
  append_id_filter(legacy.get(), "6924f3a1c0ffee0000000001");
  append_utf8(legacy.get(), "chat", "5:alice:bob");
  bson_append_int32(legacy.get(), "seq", -1, 3);
  append_utf8(legacy.get(), "sender", "alice");
  append_utf8(legacy.get(), "text", "hi");
  const auto read = message_from_document(legacy.get());
  ASSERT_TRUE(read);
  EXPECT_EQ(read->kind, chat::EntryKind::message);
  EXPECT_EQ(read->target, 0u);
  EXPECT_EQ(read->edited_ms, 0);
  EXPECT_FALSE(read->deleted);

  bson_append_int32(legacy.get(), "kind", -1, 99);  // a later chatd's kind
  EXPECT_FALSE(message_from_document(legacy.get()));
}

TEST(BsonMapping, ABlockMatchesOnlyWhereItChangesTheState) {
  const auto chat = chat::ChatKey::of("bob", "alice");
  Bson selector, update;
  append_block_update(selector.get(), update.get(), chat, "bob", true);
  EXPECT_EQ(selector.json(), R"({ "_id" : "5:alice:bob", "blocked_by" : { "$ne" : "bob" } })");
  EXPECT_EQ(update.json(), R"({ "$addToSet" : { "blocked_by" : "bob" }, )"
                           R"("$setOnInsert" : { "participants" : [ "alice", "bob" ] } })");
  Bson unblock_selector, unblock;
  append_block_update(unblock_selector.get(), unblock.get(), chat, "bob", false);
  EXPECT_EQ(unblock_selector.json(), R"({ "_id" : "5:alice:bob", "blocked_by" : "bob" })");
  EXPECT_EQ(unblock.json(), R"({ "$pull" : { "blocked_by" : "bob" } })");
}

TEST(BsonMapping, BlockStateOfAChatDocument) {
  const auto chat = chat::ChatKey::of("bob", "alice");
  Bson document, none;
  bson_init_from_json(document.get(), R"({"blocked_by": ["bob", "mallory"]})", -1, nullptr);
  const BlockState state = block_state_of(document.get(), chat);
  EXPECT_TRUE(state.blocks(chat, "bob"));
  EXPECT_FALSE(state.blocks(chat, "alice"));
  EXPECT_FALSE(block_state_of(none.get(), chat).blocks(chat, "bob"));
}

TEST(BsonMapping, BulkReplyTellsTheCommittedPrefixAndTheRefusal) {
  Bson reply;
  bson_init_from_json(reply.get(),
                      R"({"nInserted": 3, "writeErrors": [{"index": 3, "code": 11000,
                          "errmsg": "E11000 duplicate key"}], "writeConcernErrors": []})",
                      -1, nullptr);
  const BulkOutcome outcome = parse_bulk_reply(reply.get());
  EXPECT_EQ(outcome.inserted, 3u);
  ASSERT_TRUE(outcome.error_index);
  EXPECT_EQ(*outcome.error_index, 3u);
  EXPECT_EQ(outcome.error_code, kDuplicateKey);
  EXPECT_FALSE(outcome.write_concern_error);
}

TEST(BsonMapping, BulkReplyTellsAWriteConcernError) {
  Bson reply;
  bson_init_from_json(reply.get(),
                      R"({"nInserted": 2, "writeErrors": [],
                          "writeConcernErrors": [{"code": 64, "errmsg": "waiting for replication timed out"}]})",
                      -1, nullptr);
  const BulkOutcome outcome = parse_bulk_reply(reply.get());
  EXPECT_EQ(outcome.inserted, 2u);
  EXPECT_FALSE(outcome.error_index);
  EXPECT_TRUE(outcome.write_concern_error);
}

TEST(BsonMapping, ClientIdLookupCoversOnlyMessagesWithOne) {
  const auto chat = chat::ChatKey::of("a", "b");
  const std::vector<chat::PendingMessage> batch = {
      {chat, "a", "one", "c1", 0}, {chat, "b", "two", "", 0}, {chat, "b", "three", "c3", 0}};
  Bson filter;
  EXPECT_EQ(append_client_ids_filter(filter.get(), batch), 2u);
  EXPECT_EQ(filter.json(),
            R"({ "$or" : [ { "chat" : "1:a:b", "sender" : "a", "client_id" : "c1" }, )"
            R"({ "chat" : "1:a:b", "sender" : "b", "client_id" : "c3" } ] })");
}

TEST(BsonMapping, ChatsFilterListsTheKeys) {
  Bson filter;
  append_chats_filter(filter.get(), {"1:a:b", "1:c:d"});
  EXPECT_EQ(filter.json(), R"({ "_id" : { "$in" : [ "1:a:b", "1:c:d" ] } })");
}

TEST(BsonMapping, LastSeqOfAChatDocument) {
  Bson chat_document, empty;
  bson_append_int32(chat_document.get(), "last_seq", -1, 12);
  EXPECT_EQ(last_seq_of(chat_document.get()), 12u);
  EXPECT_EQ(last_seq_of(empty.get()), 0u);
}

}  // namespace
}  // namespace chatd::store::mongo
