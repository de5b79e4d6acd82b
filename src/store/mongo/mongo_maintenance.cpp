// Retention, erasure and export of the MongoDB store (see mongo_maintenance.h).

#include "store/mongo/mongo_maintenance.h"

#include <algorithm>

#include "store/mongo/bson_mapping.h"
#include "store/mongo/mongo_store.h"

namespace chatd::store::mongo {
namespace {

/// Chats whose receipts forget_user() removes with one statement.
constexpr std::size_t kChatsPerStatement = 500;

std::int64_t as_limit(std::size_t limit) {
  return static_cast<std::int64_t>(std::max<std::size_t>(limit, 1));
}

std::size_t count_of(const bson_t* reply, const char* key) {
  return static_cast<std::size_t>(std::max<std::int64_t>(integer_field(reply, key).value_or(0), 0));
}

}  // namespace

MongoMaintenance::MongoMaintenance(MongoBackend& backend)
    : backend_(backend), client_(backend.connection().pool()) {}

Collection MongoMaintenance::collection(const char* name) const {
  return client_.collection(backend_.connection().database(), name);
}

void MongoMaintenance::check_ready() const {
  if (!backend_.ready()) throw MaintenanceError("mongo: the database is unreachable");
}

void MongoMaintenance::fail(const char* what, const bson_error_t& error) {
  if (is_connection_error(error)) backend_.mark_unreachable();
  throw MaintenanceError(std::string("mongo: cannot ") + what + ": " +
                         std::string(message_of(error)));
}

std::size_t MongoMaintenance::select_ids(const Collection& collection, const bson_t* filter,
                                         const bson_t* sort, std::size_t limit, bson_t* selector,
                                         const char* what) {
  Bson options;
  if (sort != nullptr) bson_append_document(options.get(), "sort", -1, sort);
  bson_append_int64(options.get(), "limit", -1, as_limit(limit));
  bson_t projection;
  bson_append_document_begin(options.get(), "projection", -1, &projection);
  bson_append_int32(&projection, "_id", -1, 1);
  bson_append_document_end(options.get(), &projection);

  Cursor cursor(mongoc_collection_find_with_opts(collection.get(), filter, options.get(), nullptr));
  bson_t id, ids;
  bson_append_document_begin(selector, "_id", -1, &id);
  bson_append_array_begin(&id, "$in", -1, &ids);
  std::size_t count = 0;
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    bson_iter_t value;
    if (!bson_iter_init_find(&value, document, "_id")) continue;
    bson_append_iter(&ids, std::to_string(count++).c_str(), -1, &value);
  }
  bson_append_array_end(&id, &ids);
  bson_append_document_end(selector, &id);
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) fail(what, error);
  return count;
}

std::size_t MongoMaintenance::update_some(const Collection& collection, const bson_t* filter,
                                          const bson_t* update, std::size_t limit,
                                          const char* what) {
  Bson selector, reply;
  if (select_ids(collection, filter, nullptr, limit, selector.get(), what) == 0) return 0;
  bson_error_t error;
  if (!mongoc_collection_update_many(collection.get(), selector.get(), update, nullptr, reply.get(),
                                     &error)) {
    fail(what, error);
  }
  return count_of(reply.get(), "modifiedCount");
}

// The oldest entries of the whole collection first, by the {ts: 1} index:
// one query however many chats there are, instead of a walk over the chats
// (a round trip each). Within a chat that is its oldest seqs first, as one
// writer stamps a chat's entries in seq order (instances whose clocks
// disagree may leave a newer seq of a chat a little longer). The chat's
// last_seq in `chats` is not touched, so its seqs go on.
PurgeStep MongoMaintenance::purge(std::int64_t before_ms, std::size_t max_rows) {
  check_ready();
  const Collection messages = collection(kMessages);
  BsonPtr older(BCON_NEW("ts", "{", "$lt", BCON_DATE_TIME(before_ms), "}"));
  BsonPtr oldest_first(BCON_NEW("ts", BCON_INT32(1)));
  Bson selector, reply;
  const std::size_t found = select_ids(messages, older.get(), oldest_first.get(), max_rows,
                                       selector.get(), "find entries to purge");
  PurgeStep step;
  step.done = found < std::max<std::size_t>(max_rows, 1);  // none older is left
  if (found == 0) return step;
  bson_error_t error;
  if (!mongoc_collection_delete_many(messages.get(), selector.get(), nullptr, reply.get(),
                                     &error)) {
    fail("purge entries", error);
  }
  step.removed = count_of(reply.get(), "deletedCount");
  return step;
}

std::vector<chat::ChatKey> MongoMaintenance::chats_of(const std::string& user,
                                                      const std::string& after, std::size_t limit) {
  check_ready();
  const Collection chats = collection(kChats);
  BsonPtr filter(BCON_NEW("participants", BCON_UTF8(user.c_str()), "_id", "{", "$gt",
                          BCON_UTF8(after.c_str()), "}"));
  BsonPtr options(BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}", "limit",
                           BCON_INT64(as_limit(limit)), "projection", "{", "_id", BCON_INT32(1),
                           "}"));
  Cursor cursor(
      mongoc_collection_find_with_opts(chats.get(), filter.get(), options.get(), nullptr));
  std::vector<chat::ChatKey> keys;
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    const auto key = utf8_field(document, "_id");
    if (auto chat = key ? chat::ChatKey::parse(*key) : std::nullopt) keys.push_back(*chat);
  }
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) fail("list a user's chats", error);
  return keys;
}

std::vector<chat::MessagePtr> MongoMaintenance::messages(const chat::ChatKey& chat,
                                                         std::uint64_t after_seq,
                                                         std::size_t limit) {
  check_ready();
  const Collection entries = collection(kMessages);
  HistoryQuery query;  // messages only, tombstones included
  query.after_seq = after_seq;
  Bson filter;
  append_history_filter(filter.get(), chat, query);
  BsonPtr options(
      BCON_NEW("sort", "{", "seq", BCON_INT32(1), "}", "limit", BCON_INT64(as_limit(limit))));
  Cursor cursor(
      mongoc_collection_find_with_opts(entries.get(), filter.get(), options.get(), nullptr));
  std::vector<chat::MessagePtr> page;
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    if (auto message = message_from_document(document)) page.push_back(std::move(message));
  }
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) fail("read a chat's messages", error);
  return page;
}

EraseStep MongoMaintenance::erase(const chat::ChatKey& chat, const std::string& user,
                                  std::size_t max_rows) {
  check_ready();
  const Collection messages = collection(kMessages);
  // The user's messages become tombstones...
  Bson own_messages;
  append_utf8(own_messages.get(), "chat", chat.str());
  append_utf8(own_messages.get(), "sender", user);
  append_messages_only(own_messages.get());
  append_not_deleted(own_messages.get());
  BsonPtr tombstone(BCON_NEW("$set", "{", "text", BCON_UTF8(""), "deleted", BCON_BOOL(true), "}"));
  EraseStep step;
  step.messages = update_some(messages, own_messages.get(), tombstone.get(), max_rows,
                              "erase a user's messages");
  if (step.messages >= max_rows) return step;
  // ...and their edits lose the text they carried.
  BsonPtr own_edits(BCON_NEW("chat", BCON_UTF8(chat.str().c_str()), "sender",
                             BCON_UTF8(user.c_str()), "kind",
                             BCON_INT32(static_cast<std::int32_t>(chat::EntryKind::edit)), "text",
                             "{", "$ne", BCON_UTF8(""), "}"));
  BsonPtr blank(BCON_NEW("$set", "{", "text", BCON_UTF8(""), "}"));
  step.edits = update_some(messages, own_edits.get(), blank.get(), max_rows - step.messages,
                           "erase a user's edits");
  return step;
}

// The receipts are found through the user's chats (the participants index,
// then the reads' chat index), a page of chats per statement, rather than
// by a scan of every receipt for _id.user.
std::size_t MongoMaintenance::forget_user(const std::string& user) {
  check_ready();
  const Collection reads = collection(kReads);
  std::size_t receipts = 0;
  std::string after;
  for (;;) {
    const std::vector<chat::ChatKey> chats = chats_of(user, after, kChatsPerStatement);
    if (chats.empty()) break;
    Bson filter, reply;
    bson_t condition, keys;
    bson_append_document_begin(filter.get(), "_id.chat", -1, &condition);
    bson_append_array_begin(&condition, "$in", -1, &keys);
    for (std::size_t i = 0; i < chats.size(); ++i) {
      append_utf8(&keys, std::to_string(i).c_str(), chats[i].str());
    }
    bson_append_array_end(&condition, &keys);
    bson_append_document_end(filter.get(), &condition);
    append_utf8(filter.get(), "_id.user", user);
    bson_error_t error;
    if (!mongoc_collection_delete_many(reads.get(), filter.get(), nullptr, reply.get(), &error)) {
      fail("remove a user's receipts", error);
    }
    receipts += count_of(reply.get(), "deletedCount");
    if (chats.size() < kChatsPerStatement) break;
    after = chats.back().str();
  }
  // Until a chat's next message (its reservation unsets hidden_for: append_chat_reservation).
  const Collection chats = collection(kChats);
  BsonPtr of_user(BCON_NEW("participants", BCON_UTF8(user.c_str())));
  BsonPtr hide(BCON_NEW("$addToSet", "{", kHiddenFor, BCON_UTF8(user.c_str()), "}"));
  bson_error_t error;
  if (!mongoc_collection_update_many(chats.get(), of_user.get(), hide.get(), nullptr, nullptr,
                                     &error)) {
    fail("hide a user's conversations", error);
  }
  return receipts;
}

}  // namespace chatd::store::mongo
