// History, read receipts, conversation lists and blocks of the MongoDB store, on its reader
// threads.
//
//   reads: {_id: {chat: "5:alice:bob", user: "alice"}, seq}   one per user and chat
//
// A receipt is an upsert with $max, so it only moves forward however many
// instances write it; the conversation list reads `chats` by participant
// (the participants + last_activity index) and, for each, its last message and
// the user's unread count. Both count messages only: changes (edits, blocks,
// ...) hold seqs of the chat's order but are not messages of the list.

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

BlockList MongoReader::blocks(const std::string& user) {
  return backend_.ready() ? list_blocks(user) : BlockList{StoreError::unavailable, {}};
}

void MongoReader::failed(const char* what, const std::string& of, const bson_error_t& error) {
  spdlog::error("mongo: cannot {} {}: {}", what, of, message_of(error));
  if (is_connection_error(error)) backend_.mark_unreachable();
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
    failed("read the history of chat", chat.str(), error);
    return HistoryPage{StoreError::unavailable, {}, false};
  }
  if (!query.oldest_first) std::reverse(page.messages.begin(), page.messages.end());
  return page;
}

// A mark_read: the receipt, both users' marks, and what a connection learns
// of its chat when it opens (blocks, the oldest kept and the last seq).
ReadMarks MongoReader::write_read_mark(const chat::ChatKey& chat, const std::string& user,
                                       std::uint64_t seq) {
  const Collection reads = client_.collection(backend_.connection().database(), kReads);
  bson_error_t error;
  if (seq != 0 && !(backend_.read_hooks() ? store_receipt_with_hook(reads, chat, user, seq, error)
                                          : store_receipt(reads, chat, user, seq, error))) {
    failed("store a read receipt in chat", chat.str(), error);
    return ReadMarks{StoreError::unavailable};
  }
  ReadMarks marks;
  if (!read_receipts(chat, marks) || !read_chat_state(chat, marks)) {
    return ReadMarks{StoreError::unavailable};
  }
  return marks;
}

bool MongoReader::read_receipts(const chat::ChatKey& chat, ReadMarks& marks) {
  const Collection reads = client_.collection(backend_.connection().database(), kReads);
  BsonPtr filter(BCON_NEW("_id.chat", BCON_UTF8(chat.str().c_str())));
  Cursor cursor(mongoc_collection_find_with_opts(reads.get(), filter.get(), nullptr, nullptr));
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
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) {
    failed("read the receipts of chat", chat.str(), error);
    return false;
  }
  return true;
}

bool MongoReader::read_chat_state(const chat::ChatKey& chat, ReadMarks& marks) {
  const std::string& db = backend_.connection().database();
  bson_error_t error;
  {
    const Collection chats = client_.collection(db, kChats);
    BsonPtr filter(BCON_NEW("_id", BCON_UTF8(chat.str().c_str())));
    BsonPtr options(
        BCON_NEW("projection", "{", kBlockedBy, BCON_INT32(1), "last_seq", BCON_INT32(1), "}"));
    Cursor cursor(
        mongoc_collection_find_with_opts(chats.get(), filter.get(), options.get(), nullptr));
    const bson_t* document = nullptr;
    if (mongoc_cursor_next(cursor.get(), &document)) {
      const BlockState blocks = block_state_of(document, chat);
      marks.first_blocks = blocks.first_blocks;
      marks.second_blocks = blocks.second_blocks;
      // Raised after each batch's inserts: it may lag behind them, never run ahead.
      marks.last_seq = last_seq_of(document);
    }
    if (mongoc_cursor_error(cursor.get(), &error)) {
      failed("read the blocks of chat", chat.str(), error);
      return false;
    }
  }
  // The oldest entry left after retention, of any kind: the {chat, seq} index's first.
  const Collection messages = client_.collection(db, kMessages);
  BsonPtr filter(BCON_NEW("chat", BCON_UTF8(chat.str().c_str())));
  BsonPtr options(BCON_NEW("sort", "{", "seq", BCON_INT32(1), "}", "limit", BCON_INT64(1),
                           "projection", "{", "seq", BCON_INT32(1), "}"));
  Cursor cursor(
      mongoc_collection_find_with_opts(messages.get(), filter.get(), options.get(), nullptr));
  const bson_t* document = nullptr;
  if (mongoc_cursor_next(cursor.get(), &document)) {
    marks.first_seq = static_cast<std::uint64_t>(
        std::max<std::int64_t>(integer_field(document, "seq").value_or(0), 0));
  }
  if (mongoc_cursor_error(cursor.get(), &error)) {
    failed("read the first seq of chat", chat.str(), error);
    return false;
  }
  return true;
}

ConversationList MongoReader::list_conversations(const std::string& user, std::size_t limit) {
  const std::string& db = backend_.connection().database();
  const Collection chats = client_.collection(db, kChats);
  const Collection messages = client_.collection(db, kMessages);
  bson_error_t error;
  const auto failure = [&] {
    failed("list the conversations of", user, error);
    return ConversationList{StoreError::unavailable, {}};
  };
  // Not the chats an operator's erasure hid from the user (hidden_for, until
  // the chat's next message).
  BsonPtr filter(BCON_NEW("participants", BCON_UTF8(user.c_str()), "last_seq", "{", "$gt",
                          BCON_INT64(0), "}", kHiddenFor, "{", "$ne", BCON_UTF8(user.c_str()),
                          "}"));
  // Ties (the same millisecond) are broken by the chat key, so pages are stable.
  BsonPtr options(BCON_NEW("sort", "{", "last_activity", BCON_INT32(-1), "_id", BCON_INT32(1), "}",
                           "limit", BCON_INT64(static_cast<std::int64_t>(limit))));
  std::vector<chat::ChatKey> rows;
  {
    Cursor cursor(
        mongoc_collection_find_with_opts(chats.get(), filter.get(), options.get(), nullptr));
    const bson_t* document = nullptr;
    while (mongoc_cursor_next(cursor.get(), &document)) {
      const auto key = utf8_field(document, "_id");
      auto chat = key ? chat::ChatKey::parse(*key) : std::nullopt;
      if (chat) rows.push_back(std::move(*chat));
    }
    if (mongoc_cursor_error(cursor.get(), &error)) return failure();
  }
  ConversationList result;
  for (auto& chat : rows) {
    ReadMarks marks;
    if (!read_receipts(chat, marks)) return ConversationList{StoreError::unavailable, {}};
    Conversation conversation{chat, nullptr, marks.of(chat, user), 0};
    {
      // The newest message; the changes after it do not count.
      Bson last;
      append_utf8(last.get(), "chat", chat.str());
      append_messages_only(last.get());
      BsonPtr newest(BCON_NEW("sort", "{", "seq", BCON_INT32(-1), "}", "limit", BCON_INT64(1)));
      Cursor cursor(
          mongoc_collection_find_with_opts(messages.get(), last.get(), newest.get(), nullptr));
      const bson_t* document = nullptr;
      if (mongoc_cursor_next(cursor.get(), &document)) {
        conversation.last = message_from_document(document);
      }
      if (mongoc_cursor_error(cursor.get(), &error)) return failure();
    }
    if (!conversation.last) continue;  // only changes (a block), or retention took them all
    Bson unread;
    BsonPtr range(BCON_NEW("chat", BCON_UTF8(chat.str().c_str()), "seq", "{", "$gt",
                           BCON_INT64(static_cast<std::int64_t>(conversation.read_seq)), "}",
                           "sender", "{", "$ne", BCON_UTF8(user.c_str()), "}"));
    bson_concat(unread.get(), range.get());
    append_messages_only(unread.get());
    append_not_deleted(unread.get());
    const std::int64_t count = mongoc_collection_count_documents(messages.get(), unread.get(),
                                                                 nullptr, nullptr, nullptr, &error);
    if (count < 0) return failure();
    conversation.unread = static_cast<std::uint64_t>(count);
    result.conversations.push_back(std::move(conversation));
  }
  return result;
}

// The participants index finds the user's chats; blocked_by holds at most two names.
BlockList MongoReader::list_blocks(const std::string& user) {
  const Collection chats = client_.collection(backend_.connection().database(), kChats);
  BsonPtr filter(
      BCON_NEW("participants", BCON_UTF8(user.c_str()), kBlockedBy, BCON_UTF8(user.c_str())));
  BsonPtr options(BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}"));
  Cursor cursor(
      mongoc_collection_find_with_opts(chats.get(), filter.get(), options.get(), nullptr));
  BlockList list;
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    const auto key = utf8_field(document, "_id");
    const auto chat = key ? chat::ChatKey::parse(*key) : std::nullopt;
    if (chat && chat->has_participant(user)) list.users.push_back(chat->peer_of(user));
  }
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) {
    failed("list the blocks of", user, error);
    return BlockList{StoreError::unavailable, {}};
  }
  std::sort(list.users.begin(), list.users.end());
  return list;
}

}  // namespace chatd::store::mongo
