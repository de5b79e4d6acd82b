#include "store/mongo/bson_mapping.h"

#include <algorithm>
#include <cassert>
#include <limits>

namespace chatd::store::mongo {
std::optional<std::int64_t> integer_field(const bson_t* document, const char* key) {
  bson_iter_t iter;
  if (!bson_iter_init_find(&iter, document, key)) return std::nullopt;
  if (!BSON_ITER_HOLDS_INT64(&iter) && !BSON_ITER_HOLDS_INT32(&iter) &&
      !BSON_ITER_HOLDS_DOUBLE(&iter)) {
    return std::nullopt;
  }
  return bson_iter_as_int64(&iter);
}

std::optional<std::int64_t> date_field(const bson_t* document, const char* key) {
  bson_iter_t iter;
  if (!bson_iter_init_find(&iter, document, key) || !BSON_ITER_HOLDS_DATE_TIME(&iter)) {
    return std::nullopt;
  }
  return bson_iter_date_time(&iter);
}

namespace {

// The kind a document names; nullopt for a kind this chatd does not know.
std::optional<chat::EntryKind> entry_kind(std::int64_t value) {
  if (value < 0 || value > static_cast<std::int64_t>(chat::EntryKind::filler)) {
    return std::nullopt;
  }
  return static_cast<chat::EntryKind>(value);
}

// The history query's bounds as the int64 the documents store.
std::int64_t as_int64(std::uint64_t value) {
  return value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
             ? std::numeric_limits<std::int64_t>::max()
             : static_cast<std::int64_t>(value);
}

}  // namespace

void append_utf8(bson_t* document, const char* key, std::string_view value) {
  bson_append_utf8(document, key, -1, value.data(), static_cast<int>(value.size()));
}

std::optional<std::string> utf8_field(const bson_t* document, const char* key) {
  bson_iter_t iter;
  if (!bson_iter_init_find(&iter, document, key) || !BSON_ITER_HOLDS_UTF8(&iter)) {
    return std::nullopt;
  }
  std::uint32_t length = 0;
  const char* data = bson_iter_utf8(&iter, &length);
  return std::string(data, length);
}

void append_id_filter(bson_t* filter, const std::string& message_id) {
  assert(bson_oid_is_valid(message_id.c_str(), message_id.size()));
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, message_id.c_str());
  bson_append_oid(filter, "_id", -1, &oid);
}

void append_message_document(bson_t* document, const chat::Message& message) {
  append_id_filter(document, message.id);
  append_utf8(document, "chat", message.chat.str());
  bson_append_int64(document, "seq", -1, as_int64(message.seq));
  append_utf8(document, "sender", message.sender);
  append_utf8(document, "text", message.text);
  bson_append_date_time(document, "ts", -1, message.timestamp_ms);
  // Absent rather than empty, so the partial unique index only sees real ids.
  if (!message.client_id.empty()) append_utf8(document, "client_id", message.client_id);
  // Absent when none, so the outbox index holds only messages with events.
  if (message.hooks != 0) append_hooks(document, message.hooks);
  // A message's document stays as it was before changes existed: each field
  // below is there only when it says something.
  if (chat::is_change(message.kind)) {
    bson_append_int32(document, "kind", -1, static_cast<std::int32_t>(message.kind));
  }
  if (message.target != 0) bson_append_int64(document, "target", -1, as_int64(message.target));
  if (!message.target_id.empty()) append_utf8(document, "target_id", message.target_id);
  if (message.edited_ms != 0) bson_append_date_time(document, "edited_at", -1, message.edited_ms);
  if (message.deleted) bson_append_bool(document, "deleted", -1, true);
}

void append_hooks(bson_t* document, std::uint8_t hooks) {
  bson_t array;
  bson_append_array_begin(document, kHooksField, -1, &array);
  int index = 0;
  for (const std::uint8_t bit : kHookBits) {
    if ((hooks & bit) == 0) continue;
    const std::string key = std::to_string(index++);
    append_utf8(&array, key.c_str(), hook_name(bit));
  }
  bson_append_array_end(document, &array);
}

std::uint8_t hooks_of(const bson_t* document) {
  bson_iter_t iter, item;
  std::uint8_t hooks = 0;
  if (!bson_iter_init_find(&iter, document, kHooksField) || !BSON_ITER_HOLDS_ARRAY(&iter) ||
      !bson_iter_recurse(&iter, &item)) {
    return 0;
  }
  while (bson_iter_next(&item)) {
    if (!BSON_ITER_HOLDS_UTF8(&item)) continue;
    const std::string_view name = bson_iter_utf8(&item, nullptr);
    for (const std::uint8_t bit : kHookBits) {
      if (name == hook_name(bit)) hooks |= bit;
    }
  }
  return hooks;
}

chat::MessagePtr message_from_document(const bson_t* document) {
  bson_iter_t iter;
  if (!bson_iter_init_find(&iter, document, "_id") || !BSON_ITER_HOLDS_OID(&iter)) return nullptr;
  char id[25];
  bson_oid_to_string(bson_iter_oid(&iter), id);

  const auto chat_key = utf8_field(document, "chat");
  const auto key = chat_key ? chat::ChatKey::parse(*chat_key) : std::nullopt;
  const auto seq = integer_field(document, "seq");
  auto sender = utf8_field(document, "sender");
  auto text = utf8_field(document, "text");
  if (!key || !seq || *seq <= 0 || !sender || !text) return nullptr;

  auto message = std::make_shared<chat::Message>(*key);
  message->id.assign(id, 24);
  message->seq = static_cast<std::uint64_t>(*seq);
  message->sender = std::move(*sender);
  message->text = std::move(*text);
  if (bson_iter_init_find(&iter, document, "ts") && BSON_ITER_HOLDS_DATE_TIME(&iter)) {
    message->timestamp_ms = bson_iter_date_time(&iter);
  }
  message->client_id = utf8_field(document, "client_id").value_or("");
  message->hooks = hooks_of(document);
  const auto kind = entry_kind(integer_field(document, "kind").value_or(0));
  if (!kind) return nullptr;  // a newer chatd's entry: not one this one can show
  message->kind = *kind;
  message->target = static_cast<std::uint64_t>(
      std::max<std::int64_t>(integer_field(document, "target").value_or(0), 0));
  message->target_id = utf8_field(document, "target_id").value_or("");
  message->edited_ms = date_field(document, "edited_at").value_or(0);
  message->deleted = bson_iter_init_find(&iter, document, "deleted") &&
                     BSON_ITER_HOLDS_BOOL(&iter) && bson_iter_bool(&iter);
  return message;
}

void append_client_id_filter(bson_t* filter, const chat::PendingMessage& message) {
  append_utf8(filter, "chat", message.chat.str());
  append_utf8(filter, "sender", message.sender);
  append_utf8(filter, "client_id", message.client_id);
}

std::size_t append_client_ids_filter(bson_t* filter,
                                     std::span<const chat::PendingMessage> messages) {
  bson_t any;
  bson_append_array_begin(filter, "$or", -1, &any);
  std::size_t count = 0;
  for (const auto& message : messages) {
    if (message.client_id.empty()) continue;
    bson_t one;
    const std::string index = std::to_string(count++);
    bson_append_document_begin(&any, index.c_str(), -1, &one);
    append_client_id_filter(&one, message);
    bson_append_document_end(&any, &one);
  }
  bson_append_array_end(filter, &any);
  return count;
}

void append_ids_filter(bson_t* filter, const std::vector<std::string>& message_ids) {
  bson_t id, ids;
  bson_append_document_begin(filter, "_id", -1, &id);
  bson_append_array_begin(&id, "$in", -1, &ids);
  for (std::size_t i = 0; i < message_ids.size(); ++i) {
    Bson one;  // append_id_filter writes {_id: oid}; take its value
    append_id_filter(one.get(), message_ids[i]);
    bson_iter_t value;
    if (bson_iter_init_find(&value, one.get(), "_id")) {
      bson_append_iter(&ids, std::to_string(i).c_str(), -1, &value);
    }
  }
  bson_append_array_end(&id, &ids);
  bson_append_document_end(filter, &id);
}

void append_chats_filter(bson_t* filter, const std::vector<std::string>& chat_keys) {
  bson_t id, keys;
  bson_append_document_begin(filter, "_id", -1, &id);
  bson_append_array_begin(&id, "$in", -1, &keys);
  for (std::size_t i = 0; i < chat_keys.size(); ++i) {
    append_utf8(&keys, std::to_string(i).c_str(), chat_keys[i]);
  }
  bson_append_array_end(&id, &keys);
  bson_append_document_end(filter, &id);
}

void append_messages_only(bson_t* filter) {
  bson_t condition, kinds;
  bson_append_document_begin(filter, "kind", -1, &condition);
  bson_append_array_begin(&condition, "$in", -1, &kinds);
  bson_append_null(&kinds, "0", -1);  // matches an absent kind too
  bson_append_int32(&kinds, "1", -1, static_cast<std::int32_t>(chat::EntryKind::message));
  bson_append_array_end(&condition, &kinds);
  bson_append_document_end(filter, &condition);
}

void append_not_deleted(bson_t* filter) {
  bson_t condition;
  bson_append_document_begin(filter, "deleted", -1, &condition);
  bson_append_bool(&condition, "$ne", -1, true);
  bson_append_document_end(filter, &condition);
}

void append_history_filter(bson_t* filter, const chat::ChatKey& chat, const HistoryQuery& query) {
  append_utf8(filter, "chat", chat.str());
  bson_t range;
  bson_append_document_begin(filter, "seq", -1, &range);
  bson_append_int64(&range, "$gt", -1, as_int64(query.after_seq));
  if (query.before_seq != 0) bson_append_int64(&range, "$lt", -1, as_int64(query.before_seq));
  bson_append_document_end(filter, &range);
  if (query.messages_only) append_messages_only(filter);
  if (query.skip_deleted) append_not_deleted(filter);
}

void append_history_options(bson_t* options, const HistoryQuery& query) {
  bson_t sort;
  bson_append_document_begin(options, "sort", -1, &sort);
  bson_append_int32(&sort, "seq", -1, query.oldest_first ? 1 : -1);
  bson_append_document_end(options, &sort);
  // One document more than asked tells whether there is more.
  bson_append_int64(options, "limit", -1, static_cast<std::int64_t>(query.limit) + 1);
}

void append_chat_creation(bson_t* update, const chat::ChatKey& chat) {
  bson_t set_on_insert, participants;
  bson_append_document_begin(update, "$setOnInsert", -1, &set_on_insert);
  bson_append_array_begin(&set_on_insert, "participants", -1, &participants);
  append_utf8(&participants, "0", chat.first());
  append_utf8(&participants, "1", chat.second());
  bson_append_array_end(&set_on_insert, &participants);
  bson_append_document_end(update, &set_on_insert);
}

void append_chat_reservation(bson_t* update, const chat::ChatKey& chat, std::uint64_t count,
                             std::optional<std::int64_t> message_ms,
                             std::optional<std::pair<std::string_view, bool>> block) {
  append_chat_creation(update, chat);
  bson_t inc;
  bson_append_document_begin(update, "$inc", -1, &inc);
  bson_append_int64(&inc, "last_seq", -1, as_int64(count));
  bson_append_document_end(update, &inc);
  if (message_ms) {
    bson_t max, unset;
    bson_append_document_begin(update, "$max", -1, &max);
    bson_append_date_time(&max, "last_activity", -1, *message_ms);
    bson_append_document_end(update, &max);
    bson_append_document_begin(update, "$unset", -1, &unset);
    append_utf8(&unset, kHiddenFor, "");
    bson_append_document_end(update, &unset);
  }
  if (block) {
    bson_t change;
    bson_append_document_begin(update, block->second ? "$addToSet" : "$pull", -1, &change);
    append_utf8(&change, kBlockedBy, block->first);
    bson_append_document_end(update, &change);
  }
}

void append_block_update(bson_t* selector, bson_t* update, const chat::ChatKey& chat,
                         std::string_view user, bool blocking) {
  append_utf8(selector, "_id", chat.str());
  if (blocking) {
    bson_t condition;
    bson_append_document_begin(selector, kBlockedBy, -1, &condition);
    append_utf8(&condition, "$ne", user);
    bson_append_document_end(selector, &condition);
  } else {
    append_utf8(selector, kBlockedBy, user);
  }
  bson_t change;
  bson_append_document_begin(update, blocking ? "$addToSet" : "$pull", -1, &change);
  append_utf8(&change, kBlockedBy, user);
  bson_append_document_end(update, &change);
  if (blocking) append_chat_creation(update, chat);
}

BlockState block_state_of(const bson_t* chat_document, const chat::ChatKey& chat) {
  BlockState state;
  bson_iter_t iter, user;
  if (!bson_iter_init_find(&iter, chat_document, kBlockedBy) || !BSON_ITER_HOLDS_ARRAY(&iter) ||
      !bson_iter_recurse(&iter, &user)) {
    return state;
  }
  while (bson_iter_next(&user)) {
    if (!BSON_ITER_HOLDS_UTF8(&user)) continue;
    const std::string_view name = bson_iter_utf8(&user, nullptr);
    if (chat.has_participant(name)) state.set(chat, name, true);
  }
  return state;
}

BulkOutcome parse_bulk_reply(const bson_t* reply) {
  BulkOutcome outcome;
  if (const auto inserted = integer_field(reply, "nInserted"); inserted && *inserted > 0) {
    outcome.inserted = static_cast<std::size_t>(*inserted);
  }
  bson_iter_t iter, errors;
  if (bson_iter_init_find(&iter, reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY(&iter) &&
      bson_iter_recurse(&iter, &errors) && bson_iter_next(&errors) &&
      BSON_ITER_HOLDS_DOCUMENT(&errors)) {
    // Ordered: the first write error is the one that stopped the bulk.
    bson_iter_t field;
    if (bson_iter_recurse(&errors, &field) && bson_iter_find(&field, "index")) {
      outcome.error_index = static_cast<std::size_t>(bson_iter_as_int64(&field));
    }
    if (bson_iter_recurse(&errors, &field) && bson_iter_find(&field, "code")) {
      outcome.error_code = static_cast<std::int32_t>(bson_iter_as_int64(&field));
    }
  }
  if (bson_iter_init_find(&iter, reply, "writeConcernErrors") && BSON_ITER_HOLDS_ARRAY(&iter)) {
    bson_iter_t concern;
    outcome.write_concern_error = bson_iter_recurse(&iter, &concern) && bson_iter_next(&concern);
  }
  return outcome;
}

std::uint64_t last_seq_of(const bson_t* chat_document) {
  const auto seq = integer_field(chat_document, "last_seq");
  return seq && *seq > 0 ? static_cast<std::uint64_t>(*seq) : 0;
}

}  // namespace chatd::store::mongo
