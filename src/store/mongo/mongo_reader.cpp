// History, read receipts and conversation lists of the MongoDB store, on its reader threads.
//
//   reads: {_id: {chat: "5:alice:bob", user: "alice"}, seq}   one per user and chat
//
// A receipt is an upsert with $max, so it only moves forward however many
// instances write it; the conversation list reads `chats` by participant
// (the participants + last_activity index) and, for each, its last message and
// the user's unread count.

#include "store/mongo/mongo_reader.h"

#include <bson/bson.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "store/mongo/bson_mapping.h"
#include "store/mongo/mongo_store.h"

namespace chatd::store::mongo {

namespace {

/// {_id: {chat, user}} of one receipt.
BsonPtr receipt_id(const chat::ChatKey& chat, const std::string& user) {
  return BsonPtr(BCON_NEW("_id", "{", "chat", BCON_UTF8(chat.str().c_str()), "user",
                          BCON_UTF8(user.c_str()), "}"));
}

}  // namespace

// $max: the receipt only moves forward, however many instances write it.
bool MongoReader::store_receipt(const Collection& reads, const chat::ChatKey& chat,
                                const std::string& user, std::uint64_t seq, bson_error_t& error) {
  BsonPtr selector = receipt_id(chat, user);
  BsonPtr update(BCON_NEW("$max", "{", "seq", BCON_INT64(static_cast<std::int64_t>(seq)), "}"));
  BsonPtr options(BCON_NEW("upsert", BCON_BOOL(true)));
  return mongoc_collection_update_one(reads.get(), selector.get(), update.get(), options.get(),
                                      nullptr, &error);
}

// With message.read on, a receipt that moves forward also records its event
// (hook_seq, hook_ts), and one that does not changes nothing: first the
// receipt if it is behind, else its creation; two instances creating it at
// once collide on _id, and the loser moves it forward instead.
bool MongoReader::store_receipt_with_hook(const Collection& reads, const chat::ChatKey& chat,
                                          const std::string& user, std::uint64_t seq,
                                          bson_error_t& error) {
  const auto value = static_cast<std::int64_t>(seq);
  const std::int64_t now = chat::now_ms();
  for (int round = 0; round < 2; ++round) {
    Bson reply;
    BsonPtr behind(BCON_NEW("_id", "{", "chat", BCON_UTF8(chat.str().c_str()), "user",
                            BCON_UTF8(user.c_str()), "}", "seq", "{", "$lt", BCON_INT64(value),
                            "}"));
    BsonPtr forward(BCON_NEW("$set", "{", "seq", BCON_INT64(value), "hook_seq", BCON_INT64(value),
                             "hook_ts", BCON_DATE_TIME(now), "}"));
    if (!mongoc_collection_update_one(reads.get(), behind.get(), forward.get(), nullptr,
                                      reply.get(), &error)) {
      return false;
    }
    bson_iter_t matched;
    if (bson_iter_init_find(&matched, reply.get(), "matchedCount") &&
        bson_iter_as_int64(&matched) > 0) {
      return true;
    }
    BsonPtr id = receipt_id(chat, user);
    BsonPtr create(BCON_NEW("$setOnInsert", "{", "seq", BCON_INT64(value), "hook_seq",
                            BCON_INT64(value), "hook_ts", BCON_DATE_TIME(now), "}"));
    BsonPtr upsert(BCON_NEW("upsert", BCON_BOOL(true)));
    if (mongoc_collection_update_one(reads.get(), id.get(), create.get(), upsert.get(), nullptr,
                                     &error)) {
      return true;
    }
    if (error.code != static_cast<std::uint32_t>(kDuplicateKey)) return false;
  }
  return false;
}

MongoReader::MongoReader(MongoBackend& backend)
    : backend_(backend), client_(backend.connection().pool()) {}

HistoryPage MongoReader::history(const chat::ChatKey& chat, const HistoryQuery& query) {
  return backend_.ready() ? read_page(chat, query)
                          : HistoryPage{StoreError::unavailable, {}, false};
}

ReadMarks MongoReader::mark_read(const chat::ChatKey& chat, const std::string& user,
                                 std::uint64_t seq) {
  return backend_.ready() ? write_read_mark(chat, user, seq) : ReadMarks{StoreError::unavailable};
}

ConversationList MongoReader::conversations(const std::string& user, std::size_t limit) {
  return backend_.ready() ? list_conversations(user, limit)
                          : ConversationList{StoreError::unavailable, {}};
}

HistoryPage MongoReader::read_page(const chat::ChatKey& chat, const HistoryQuery& query) {
  const Collection messages = client_.collection(backend_.connection().database(), kMessages);
  Bson filter, options;
  append_history_filter(filter.get(), chat, query);
  append_history_options(options.get(), query);
  Cursor cursor(
      mongoc_collection_find_with_opts(messages.get(), filter.get(), options.get(), nullptr));
  HistoryPage page;
  PageFill fill(query, page);
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    if (auto message = message_from_document(document)) {
      if (!fill.add(std::move(message))) break;
    } else {
      spdlog::warn("mongo: skipping a malformed message document in chat {}", chat.str());
    }
  }
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) {
    spdlog::error("mongo: cannot read history of chat {}: {}", chat.str(), message_of(error));
    if (is_connection_error(error)) backend_.mark_unreachable();
    return HistoryPage{StoreError::unavailable, {}, false};
  }
  if (!query.oldest_first) std::reverse(page.messages.begin(), page.messages.end());
  return page;
}

ReadMarks MongoReader::write_read_mark(const chat::ChatKey& chat, const std::string& user,
                                       std::uint64_t seq) {
  const Collection reads = client_.collection(backend_.connection().database(), kReads);
  const std::string& key = chat.str();
  bson_error_t error;
  if (seq != 0 && !(backend_.read_hooks() ? store_receipt_with_hook(reads, chat, user, seq, error)
                                          : store_receipt(reads, chat, user, seq, error))) {
    spdlog::error("mongo: cannot store a read receipt in chat {}: {}", key, message_of(error));
    if (is_connection_error(error)) backend_.mark_unreachable();
    return ReadMarks{StoreError::unavailable};
  }
  BsonPtr filter(BCON_NEW("_id.chat", BCON_UTF8(key.c_str())));
  Cursor cursor(mongoc_collection_find_with_opts(reads.get(), filter.get(), nullptr, nullptr));
  ReadMarks marks;
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    bson_iter_t iter, id;
    if (!bson_iter_init_find(&iter, document, "_id") || !BSON_ITER_HOLDS_DOCUMENT(&iter) ||
        !bson_iter_recurse(&iter, &id) || !bson_iter_find(&id, "user") ||
        !BSON_ITER_HOLDS_UTF8(&id)) {
      continue;
    }
    const std::string_view reader = bson_iter_utf8(&id, nullptr);
    const auto read_seq = integer_field(document, "seq").value_or(0);
    (reader == chat.first() ? marks.first : marks.second) =
        static_cast<std::uint64_t>(std::max<std::int64_t>(read_seq, 0));
  }
  if (mongoc_cursor_error(cursor.get(), &error)) {
    spdlog::error("mongo: cannot read the receipts of chat {}: {}", key, message_of(error));
    if (is_connection_error(error)) backend_.mark_unreachable();
    return ReadMarks{StoreError::unavailable};
  }
  return marks;
}

ConversationList MongoReader::list_conversations(const std::string& user, std::size_t limit) {
  const std::string& db = backend_.connection().database();
  const Collection chats = client_.collection(db, kChats);
  const Collection messages = client_.collection(db, kMessages);
  bson_error_t error;
  const auto failed = [&] {
    spdlog::error("mongo: cannot list the conversations of {}: {}", user, message_of(error));
    if (is_connection_error(error)) backend_.mark_unreachable();
    return ConversationList{StoreError::unavailable, {}};
  };
  BsonPtr filter(BCON_NEW("participants", BCON_UTF8(user.c_str()), "last_seq", "{", "$gt",
                          BCON_INT64(0), "}"));
  // Ties (the same millisecond) are broken by the chat key, so pages are stable.
  BsonPtr options(BCON_NEW("sort", "{", "last_activity", BCON_INT32(-1), "_id", BCON_INT32(1), "}",
                           "limit", BCON_INT64(static_cast<std::int64_t>(limit))));
  struct Row {
    chat::ChatKey chat;
    std::uint64_t last_seq;
  };
  std::vector<Row> rows;
  {
    Cursor cursor(
        mongoc_collection_find_with_opts(chats.get(), filter.get(), options.get(), nullptr));
    const bson_t* document = nullptr;
    while (mongoc_cursor_next(cursor.get(), &document)) {
      const auto key = utf8_field(document, "_id");
      auto chat = key ? chat::ChatKey::parse(*key) : std::nullopt;
      if (chat) rows.push_back(Row{std::move(*chat), last_seq_of(document)});
    }
    if (mongoc_cursor_error(cursor.get(), &error)) return failed();
  }
  ConversationList result;
  for (auto& row : rows) {
    const ReadMarks marks = write_read_mark(row.chat, {}, 0);
    if (marks.error != StoreError::none) return ConversationList{marks.error, {}};
    Conversation conversation{row.chat, nullptr, marks.of(row.chat, user), 0};
    {
      BsonPtr last(BCON_NEW("chat", BCON_UTF8(row.chat.str().c_str()), "seq",
                            BCON_INT64(static_cast<std::int64_t>(row.last_seq))));
      Cursor cursor(mongoc_collection_find_with_opts(messages.get(), last.get(), nullptr, nullptr));
      const bson_t* document = nullptr;
      if (mongoc_cursor_next(cursor.get(), &document)) {
        conversation.last = message_from_document(document);
      }
      if (mongoc_cursor_error(cursor.get(), &error)) return failed();
    }
    if (!conversation.last) continue;  // its last message is not visible yet
    BsonPtr unread(BCON_NEW("chat", BCON_UTF8(row.chat.str().c_str()), "seq", "{", "$gt",
                            BCON_INT64(static_cast<std::int64_t>(conversation.read_seq)), "}",
                            "sender", "{", "$ne", BCON_UTF8(user.c_str()), "}"));
    const std::int64_t count = mongoc_collection_count_documents(messages.get(), unread.get(),
                                                                 nullptr, nullptr, nullptr, &error);
    if (count < 0) return failed();
    conversation.unread = static_cast<std::uint64_t>(count);
    result.conversations.push_back(std::move(conversation));
  }
  return result;
}

}  // namespace chatd::store::mongo
