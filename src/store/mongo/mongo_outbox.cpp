#include "store/mongo/mongo_outbox.h"

#include <spdlog/spdlog.h>

#include "store/mongo/bson_mapping.h"
#include "store/mongo/mongo_store.h"

namespace chatd::store::mongo {
namespace {

/// {hooks: {$in: [every event name]}}: a message with an event to send.
void append_pending_filter(bson_t* filter) {
  bson_t condition, names;
  bson_append_document_begin(filter, kHooksField, -1, &condition);
  bson_append_array_begin(&condition, "$in", -1, &names);
  int index = 0;
  for (const std::uint8_t bit : kHookBits) {
    const std::string key = std::to_string(index++);
    append_utf8(&names, key.c_str(), hook_name(bit));
  }
  bson_append_array_end(&condition, &names);
  bson_append_document_end(filter, &condition);
}

/// {chat, seq} of one message.
void append_message_filter(bson_t* filter, const chat::ChatKey& chat, std::uint64_t seq) {
  append_utf8(filter, "chat", chat.str());
  bson_append_int64(filter, "seq", -1, static_cast<std::int64_t>(seq));
}

/// {<op>: {hooks: name}}: $pull settles an event, $addToSet sends it again.
void append_hook_update(bson_t* update, const char* op, std::uint8_t bit) {
  bson_t inner;
  bson_append_document_begin(update, op, -1, &inner);
  append_utf8(&inner, kHooksField, hook_name(bit));
  bson_append_document_end(update, &inner);
}

void append_failed_document(bson_t* document, const FailedEvent& event) {
  append_utf8(document, "_id", event.id);
  append_utf8(document, "type", event.type);
  append_utf8(document, "chat", event.chat.str());
  bson_append_int64(document, "seq", -1, static_cast<std::int64_t>(event.seq));
  bson_append_int32(document, "bit", -1, event.bit);
  append_utf8(document, "reader", event.reader);
  bson_append_int64(document, "attempts", -1, event.attempts);
  append_utf8(document, "last_error", event.last_error);
  bson_append_date_time(document, "failed", -1, event.failed_ms);
  append_utf8(document, "body", event.body);
}

std::optional<FailedEvent> failed_from_document(const bson_t* document) {
  auto id = utf8_field(document, "_id");
  auto key = utf8_field(document, "chat");
  auto chat = key ? chat::ChatKey::parse(*key) : std::nullopt;
  if (!id || !chat) return std::nullopt;
  return FailedEvent{
      .id = std::move(*id),
      .type = utf8_field(document, "type").value_or(""),
      .chat = std::move(*chat),
      .seq = static_cast<std::uint64_t>(integer_field(document, "seq").value_or(0)),
      .bit = static_cast<std::uint8_t>(integer_field(document, "bit").value_or(0)),
      .reader = utf8_field(document, "reader").value_or(""),
      .attempts = static_cast<std::uint32_t>(integer_field(document, "attempts").value_or(0)),
      .last_error = utf8_field(document, "last_error").value_or(""),
      .failed_ms = date_field(document, "failed").value_or(0),
      .body = utf8_field(document, "body").value_or("")};
}

}  // namespace

MongoOutbox::MongoOutbox(MongoBackend& backend)
    : backend_(backend), client_(backend.connection().pool()) {}

Collection MongoOutbox::collection(const char* name) const {
  return client_.collection(backend_.connection().database(), name);
}

void MongoOutbox::failed_to(const char* what, const bson_error_t& error) {
  spdlog::error("mongo: cannot {}: {}", what, message_of(error));
  if (is_connection_error(error)) backend_.mark_unreachable();
}

std::optional<std::vector<chat::MessagePtr>> MongoOutbox::pending(std::size_t chats,
                                                                  std::size_t per_chat,
                                                                  const ReadFrom& after) {
  if (!backend_.ready()) return std::nullopt;
  const Collection messages = collection(kMessages);
  bson_error_t error;
  std::vector<chat::MessagePtr> page;
  std::string cursor = after_chat_;
  std::string first;  // the first chat of this call: met again, every chat was taken
  for (std::size_t taken = 0; taken < chats;) {
    // The next chat with an event to send, past the cursor.
    std::optional<std::string> next;
    {
      Bson filter;
      append_pending_filter(filter.get());
      if (!cursor.empty()) {
        bson_t past;
        bson_append_document_begin(filter.get(), "chat", -1, &past);
        append_utf8(&past, "$gt", cursor);
        bson_append_document_end(filter.get(), &past);
      }
      BsonPtr options(BCON_NEW("sort", "{", "chat", BCON_INT32(1), "}", "limit", BCON_INT64(1),
                               "projection", "{", "chat", BCON_INT32(1), "}"));
      Cursor found(
          mongoc_collection_find_with_opts(messages.get(), filter.get(), options.get(), nullptr));
      const bson_t* document = nullptr;
      if (mongoc_cursor_next(found.get(), &document)) next = utf8_field(document, "chat");
      if (mongoc_cursor_error(found.get(), &error)) {
        failed_to("read the webhook outbox", error);
        return std::nullopt;
      }
    }
    if (!next) {  // past the last chat: start over, once
      if (cursor.empty()) break;
      cursor.clear();
      continue;
    }
    if (*next == first) break;
    if (first.empty()) first = *next;
    cursor = *next;
    const auto key = chat::ChatKey::parse(*next);
    const auto from = key ? after(*key) : std::nullopt;
    if (!from) continue;  // skipped: not counted as taken
    Bson filter;
    append_utf8(filter.get(), "chat", *next);
    append_pending_filter(filter.get());
    bson_t seq_after;
    bson_append_document_begin(filter.get(), "seq", -1, &seq_after);
    bson_append_int64(&seq_after, "$gt", -1, static_cast<std::int64_t>(*from));
    bson_append_document_end(filter.get(), &seq_after);
    BsonPtr options(BCON_NEW("sort", "{", "seq", BCON_INT32(1), "}", "limit",
                             BCON_INT64(static_cast<std::int64_t>(per_chat))));
    Cursor found(
        mongoc_collection_find_with_opts(messages.get(), filter.get(), options.get(), nullptr));
    const bson_t* document = nullptr;
    while (mongoc_cursor_next(found.get(), &document)) {
      if (auto message = message_from_document(document); message && message->hooks != 0) {
        page.push_back(std::move(message));
      }
    }
    if (mongoc_cursor_error(found.get(), &error)) {
      failed_to("read the webhook outbox", error);
      return std::nullopt;
    }
    ++taken;
  }
  after_chat_ = cursor;
  return page;
}

std::optional<std::vector<PendingRead>> MongoOutbox::pending_reads(std::size_t limit) {
  if (!backend_.ready()) return std::nullopt;
  const Collection reads = collection(kReads);
  BsonPtr filter(after_read_chat_.empty()
                     ? BCON_NEW("hook_seq", "{", "$gt", BCON_INT64(0), "}")
                     : BCON_NEW("hook_seq", "{", "$gt", BCON_INT64(0), "}", "_id.chat", "{", "$gt",
                                BCON_UTF8(after_read_chat_.c_str()), "}"));
  BsonPtr options(BCON_NEW("sort", "{", "_id.chat", BCON_INT32(1), "_id.user", BCON_INT32(1), "}",
                           "limit", BCON_INT64(static_cast<std::int64_t>(limit))));
  Cursor cursor(
      mongoc_collection_find_with_opts(reads.get(), filter.get(), options.get(), nullptr));
  std::vector<PendingRead> page;
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    bson_iter_t iter, id;
    if (!bson_iter_init_find(&iter, document, "_id") || !BSON_ITER_HOLDS_DOCUMENT(&iter) ||
        !bson_iter_recurse(&iter, &id)) {
      continue;
    }
    bson_t id_document;
    std::uint32_t length = 0;
    const std::uint8_t* data = nullptr;
    bson_iter_document(&iter, &length, &data);
    if (!bson_init_static(&id_document, data, length)) continue;
    const auto key = utf8_field(&id_document, "chat");
    auto reader = utf8_field(&id_document, "user");
    auto chat = key ? chat::ChatKey::parse(*key) : std::nullopt;
    if (!chat || !reader) continue;
    page.push_back(
        PendingRead{std::move(*chat), std::move(*reader),
                    static_cast<std::uint64_t>(integer_field(document, "hook_seq").value_or(0)),
                    date_field(document, "hook_ts").value_or(0)});
  }
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) {
    failed_to("read the webhook outbox", error);
    return std::nullopt;
  }
  after_read_chat_ = page.size() < limit || page.empty() ? std::string() : page.back().chat.str();
  return page;
}

bool MongoOutbox::settle(std::span<const SettledHook> delivered,
                         std::span<const FailedEvent> failed) {
  bson_error_t error;
  // The failures are kept before their events are taken off the messages: a
  // crash in between leaves an event both pending and failed (sent again),
  // never neither.
  if (!failed.empty()) {
    const Collection failures = collection(kWebhookFailed);
    for (const auto& event : failed) {
      Bson selector, document;
      append_utf8(selector.get(), "_id", event.id);
      append_failed_document(document.get(), event);
      BsonPtr options(BCON_NEW("upsert", BCON_BOOL(true)));
      if (!mongoc_collection_replace_one(failures.get(), selector.get(), document.get(),
                                         options.get(), nullptr, &error)) {
        failed_to("keep a failed webhook event", error);
        return false;
      }
    }
  }
  const Collection messages = collection(kMessages);
  Bulk bulk(mongoc_collection_create_bulk_operation_with_opts(messages.get(), nullptr));
  std::size_t updates = 0;
  auto add = [&](const chat::ChatKey& chat, std::uint64_t seq, std::uint8_t bit) {
    Bson selector, update;
    append_message_filter(selector.get(), chat, seq);
    append_hook_update(update.get(), "$pull", bit);
    ++updates;
    return mongoc_bulk_operation_update_one_with_opts(bulk.get(), selector.get(), update.get(),
                                                      nullptr, &error);
  };
  const Collection reads = collection(kReads);
  // A read event settles its receipt only if it has not moved on meanwhile.
  auto settle_read = [&](const chat::ChatKey& chat, const std::string& reader, std::uint64_t seq) {
    BsonPtr selector(BCON_NEW("_id", "{", "chat", BCON_UTF8(chat.str().c_str()), "user",
                              BCON_UTF8(reader.c_str()), "}", "hook_seq",
                              BCON_INT64(static_cast<std::int64_t>(seq))));
    BsonPtr update(BCON_NEW("$set", "{", "hook_seq", BCON_INT64(0), "}"));
    return mongoc_collection_update_one(reads.get(), selector.get(), update.get(), nullptr, nullptr,
                                        &error);
  };
  for (const auto& hook : delivered) {
    const bool ok = hook.bit == kHookRead ? settle_read(hook.chat, hook.reader, hook.seq)
                                          : add(hook.chat, hook.seq, hook.bit);
    if (!ok) return failed_to("settle webhook events", error), false;
  }
  for (const auto& event : failed) {
    const bool ok = event.bit == kHookRead ? settle_read(event.chat, event.reader, event.seq)
                                           : add(event.chat, event.seq, event.bit);
    if (!ok) return failed_to("settle webhook events", error), false;
  }
  if (updates == 0) return true;
  Bson reply;
  if (!mongoc_bulk_operation_execute(bulk.get(), reply.get(), &error)) {
    failed_to("settle webhook events", error);
    return false;
  }
  return true;
}

std::optional<std::vector<FailedEvent>> MongoOutbox::failed(std::size_t limit) {
  if (!backend_.ready()) return std::nullopt;
  const Collection failures = collection(kWebhookFailed);
  Bson filter;
  BsonPtr options(BCON_NEW("sort", "{", "failed", BCON_INT32(1), "_id", BCON_INT32(1), "}", "limit",
                           BCON_INT64(static_cast<std::int64_t>(limit))));
  Cursor cursor(
      mongoc_collection_find_with_opts(failures.get(), filter.get(), options.get(), nullptr));
  std::vector<FailedEvent> events;
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    if (auto event = failed_from_document(document)) events.push_back(std::move(*event));
  }
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) {
    failed_to("list failed webhook events", error);
    return std::nullopt;
  }
  return events;
}

std::optional<bool> MongoOutbox::retry(const std::string& event_id) {
  if (!backend_.ready()) return std::nullopt;
  const Collection failures = collection(kWebhookFailed);
  Bson filter;
  append_utf8(filter.get(), "_id", event_id);
  std::optional<FailedEvent> event;
  bson_error_t error;
  {
    Cursor cursor(mongoc_collection_find_with_opts(failures.get(), filter.get(), nullptr, nullptr));
    const bson_t* document = nullptr;
    if (mongoc_cursor_next(cursor.get(), &document)) event = failed_from_document(document);
    if (mongoc_cursor_error(cursor.get(), &error)) {
      failed_to("find a failed webhook event", error);
      return std::nullopt;
    }
  }
  if (!event) return false;
  // Pending again first, then no longer failed: a crash in between sends it
  // once more at worst.
  bool pending_again = false;
  if (event->bit == kHookRead) {
    // Unless the receipt has moved on and its newer event is pending already.
    const Collection reads = collection(kReads);
    BsonPtr selector(BCON_NEW("_id", "{", "chat", BCON_UTF8(event->chat.str().c_str()), "user",
                              BCON_UTF8(event->reader.c_str()), "}", "hook_seq", BCON_INT64(0)));
    BsonPtr update(BCON_NEW("$set", "{", "hook_seq",
                            BCON_INT64(static_cast<std::int64_t>(event->seq)), "hook_ts",
                            BCON_DATE_TIME(chat::now_ms()), "}"));
    pending_again = mongoc_collection_update_one(reads.get(), selector.get(), update.get(), nullptr,
                                                 nullptr, &error);
  } else {
    const Collection messages = collection(kMessages);
    Bson selector, update;
    append_message_filter(selector.get(), event->chat, event->seq);
    append_hook_update(update.get(), "$addToSet", event->bit);
    pending_again = mongoc_collection_update_one(messages.get(), selector.get(), update.get(),
                                                 nullptr, nullptr, &error);
  }
  if (!pending_again ||
      !mongoc_collection_delete_one(failures.get(), filter.get(), nullptr, nullptr, &error)) {
    failed_to("retry a failed webhook event", error);
    return std::nullopt;
  }
  return true;
}

std::optional<Backlog> MongoOutbox::backlog() {
  if (!backend_.ready()) return std::nullopt;
  const Collection messages = collection(kMessages);
  Bson filter, empty;
  bson_error_t error;
  append_pending_filter(filter.get());
  Backlog backlog;
  const std::int64_t events = mongoc_collection_count_documents(messages.get(), filter.get(),
                                                                nullptr, nullptr, nullptr, &error);
  if (events < 0) return failed_to("count the webhook backlog", error), std::nullopt;
  backlog.events = static_cast<std::uint64_t>(events);
  if (events > 0) {
    BsonPtr options(BCON_NEW("sort", "{", "ts", BCON_INT32(1), "}", "limit", BCON_INT64(1)));
    Cursor cursor(
        mongoc_collection_find_with_opts(messages.get(), filter.get(), options.get(), nullptr));
    const bson_t* document = nullptr;
    if (mongoc_cursor_next(cursor.get(), &document))
      backlog.oldest_ms = date_field(document, "ts").value_or(0);
    if (mongoc_cursor_error(cursor.get(), &error)) {
      return failed_to("read the oldest webhook event", error), std::nullopt;
    }
  }
  {
    const Collection reads = collection(kReads);
    BsonPtr pending_reads(BCON_NEW("hook_seq", "{", "$gt", BCON_INT64(0), "}"));
    const std::int64_t count = mongoc_collection_count_documents(reads.get(), pending_reads.get(),
                                                                 nullptr, nullptr, nullptr, &error);
    if (count < 0) return failed_to("count the webhook backlog", error), std::nullopt;
    backlog.events += static_cast<std::uint64_t>(count);
    if (count > 0) {
      BsonPtr options(BCON_NEW("sort", "{", "hook_ts", BCON_INT32(1), "}", "limit", BCON_INT64(1)));
      Cursor cursor(mongoc_collection_find_with_opts(reads.get(), pending_reads.get(),
                                                     options.get(), nullptr));
      const bson_t* document = nullptr;
      if (mongoc_cursor_next(cursor.get(), &document)) {
        const std::int64_t oldest = date_field(document, "hook_ts").value_or(0);
        if (oldest != 0 && (backlog.oldest_ms == 0 || oldest < backlog.oldest_ms)) {
          backlog.oldest_ms = oldest;
        }
      }
      if (mongoc_cursor_error(cursor.get(), &error)) {
        return failed_to("read the oldest webhook event", error), std::nullopt;
      }
    }
  }
  const Collection failures = collection(kWebhookFailed);
  const std::int64_t failed = mongoc_collection_count_documents(failures.get(), empty.get(),
                                                                nullptr, nullptr, nullptr, &error);
  if (failed < 0) return failed_to("count failed webhook events", error), std::nullopt;
  backlog.failed = static_cast<std::uint64_t>(failed);
  return backlog;
}

bool MongoOutbox::hold_lease(const std::string& instance, std::chrono::milliseconds ttl) {
  if (!backend_.ready()) return false;
  const Collection leases = collection(kWebhookLease);
  const std::int64_t now = chat::now_ms();
  // Ours already, or run out: take it. Held by another instance: the upsert
  // collides with its document on _id, and the answer is no.
  BsonPtr selector(BCON_NEW("_id", BCON_UTF8("sender"), "$or", "[", "{", "owner",
                            BCON_UTF8(instance.c_str()), "}", "{", "until", "{", "$lt",
                            BCON_DATE_TIME(now), "}", "}", "]"));
  BsonPtr update(BCON_NEW("$set", "{", "owner", BCON_UTF8(instance.c_str()), "until",
                          BCON_DATE_TIME(now + ttl.count()), "}"));
  BsonPtr options(BCON_NEW("upsert", BCON_BOOL(true)));
  bson_error_t error;
  Bson reply;
  if (mongoc_collection_update_one(leases.get(), selector.get(), update.get(), options.get(),
                                   reply.get(), &error)) {
    return true;
  }
  constexpr std::uint32_t kDuplicateKeyCode = 11000;
  if (error.code != kDuplicateKeyCode) failed_to("hold the webhook lease", error);
  return false;
}

}  // namespace chatd::store::mongo
