#include "store/mongo/batch_writer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "store/mongo/bson_mapping.h"
#include "store/mongo/mongo_connection.h"

namespace chatd::store::mongo {
namespace {

// Renumbering rounds in one batch before its rest is refused. Each round
// means another instance committed to the same chat in between, so this is
// only reached under a storm of writers on one chat.
constexpr std::size_t kMaxRounds = 64;
// The seq cache is dropped past this many chats; it refills from `chats`.
constexpr std::size_t kMaxCachedChats = 100'000;

// Usernames hold no control characters, so '\n' separates the parts safely.
std::string client_key(const chat::PendingMessage& message) {
  return message.chat.str() + '\n' + message.sender + '\n' + message.client_id;
}

}  // namespace

BatchWriter::BatchWriter(mongoc_client_t* client, const std::string& database)
    : messages_(mongoc_client_get_collection(client, database.c_str(), kMessages)),
      chats_(mongoc_client_get_collection(client, database.c_str(), kChats)) {}

bool BatchWriter::write(std::span<const chat::PendingMessage> batch,
                        std::vector<AppendResult>& results) {
  unreachable_ = false;
  results.assign(batch.size(), AppendResult{StoreError::unavailable, nullptr, false});
  if (last_seq_.size() > kMaxCachedChats) last_seq_.clear();
  if (!find_originals(batch, results)) return !unreachable_;
  if (!load_chats(batch, results)) return !unreachable_;

  const std::int64_t timestamp = chat::now_ms();
  std::vector<Insert> run;  // the messages since the last change, for one bulk insert
  std::unordered_map<std::string, std::size_t> first_with_client_id;
  std::vector<std::pair<std::size_t, std::size_t>> repeats;  // (index, index of the first)
  bool ok = true;
  for (std::size_t i = 0; ok && i < batch.size(); ++i) {
    const chat::PendingMessage& pending = batch[i];
    if (results[i].duplicate) {  // stored before this batch
      // An edit or delete stored without its effect (a failed write) gets it now.
      if (chat::is_change(pending.kind)) ok = apply_to_target(*results[i].message, true);
      if (!ok) results[i] = AppendResult{StoreError::unavailable, nullptr, false};
      continue;
    }
    if (!pending.client_id.empty()) {
      const auto [first, fresh] = first_with_client_id.emplace(client_key(pending), i);
      if (!fresh) {  // the same send twice in one batch: the first one counts
        repeats.emplace_back(i, first->second);
        continue;
      }
    }
    // blocks_ holds every chat of the batch (load_chats) as of this entry.
    if (refused_when_blocked(pending.kind) &&
        blocks_[pending.chat.str()].blocks(pending.chat, pending.chat.peer_of(pending.sender))) {
      results[i] = refused(Refusal::blocked);
      continue;
    }
    if (pending.kind == chat::EntryKind::message) {
      run.push_back(Insert{i, make_message(pending, timestamp)});
      continue;
    }
    // A change comes after the messages before it, in its chat's order.
    ok = insert_all(run, batch, results) && apply_change(i, batch, results, timestamp);
    run.clear();
  }
  if (ok) insert_all(run, batch, results);
  update_chats(results, timestamp);  // for what was committed, even in part
  for (const auto& [index, first] : repeats) {
    const AppendResult& original = results[first];
    if (original.error != StoreError::none) continue;
    results[index] = original.message ? duplicate_of(*original.message, batch[index].origin)
                                      : original;  // refused by the chat's rules: so is this
  }
  return !unreachable_;
}

// One query for every client id in the batch: sends that were stored before
// (a v2 client's retry, a second import) complete with the original.
bool BatchWriter::find_originals(std::span<const chat::PendingMessage> batch,
                                 std::vector<AppendResult>& results) {
  Bson filter;
  if (append_client_ids_filter(filter.get(), batch) == 0) return true;

  Cursor cursor(mongoc_collection_find_with_opts(messages_.get(), filter.get(), nullptr, nullptr));
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    const chat::MessagePtr original = message_from_document(document);
    if (!original) continue;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const chat::PendingMessage& pending = batch[i];
      if (!results[i].duplicate && !pending.client_id.empty() && pending.chat == original->chat &&
          pending.sender == original->sender && pending.client_id == original->client_id) {
        results[i] = duplicate_of(*original, pending.origin);
      }
    }
  }
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) return failed(error, "look up client ids");
  return true;
}

// One query for the batch's chats: their last_seq (the seq cache may lag
// behind other instances', and retention may have removed the entries that
// would make the unique index catch it) and who blocks whom.
//
// Blocks are read here, before the batch's inserts, and not re-read between
// them: a send that another instance commits while this batch is in flight
// may therefore still be stored after a block that instance committed
// meanwhile (with a later seq); every batch that starts after the block is
// committed refuses it. MongoDB has no cheaper way to make an insert depend
// on another document (FerretDB has no transactions), and a block is rare.
bool BatchWriter::load_chats(std::span<const chat::PendingMessage> batch,
                             const std::vector<AppendResult>& results) {
  blocks_.clear();
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const std::string& key = batch[i].chat.str();
    if (results[i].duplicate || std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
    keys.push_back(key);
    blocks_[key] = BlockState{};
  }
  if (keys.empty()) return true;

  Bson filter, options;
  append_chats_filter(filter.get(), keys);
  bson_t projection;
  bson_append_document_begin(options.get(), "projection", -1, &projection);
  bson_append_int32(&projection, "last_seq", -1, 1);
  bson_append_int32(&projection, kBlockedBy, -1, 1);
  bson_append_document_end(options.get(), &projection);

  std::unordered_map<std::string, std::uint64_t> found;
  Cursor cursor(
      mongoc_collection_find_with_opts(chats_.get(), filter.get(), options.get(), nullptr));
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    const auto key = utf8_field(document, "_id");
    const auto chat = key ? chat::ChatKey::parse(*key) : std::nullopt;
    if (!chat) continue;
    found[*key] = last_seq_of(document);
    blocks_[*key] = block_state_of(document, *chat);
  }
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) return failed(error, "read chats");
  // A chat without a document starts at 0; a stale last_seq (its update
  // failed after the messages were stored) is corrected by the unique index.
  for (const auto& key : keys) {
    auto& last = last_seq_[key];
    if (const auto stored = found.find(key); stored != found.end()) {
      last = std::max(last, stored->second);
    }
  }
  return true;
}

bool BatchWriter::insert_all(std::vector<Insert>& inserts,
                             std::span<const chat::PendingMessage> batch,
                             std::vector<AppendResult>& results) {
  const auto commit = [&](std::size_t from, std::size_t to) {
    for (std::size_t j = from; j < to; ++j) {
      const auto& message = inserts[j].message;
      results[inserts[j].index] = AppendResult{StoreError::none, message, false};
      auto& last = last_seq_[message->chat.str()];
      last = std::max(last, message->seq);
    }
  };
  const auto give_up = [&](std::size_t from) {
    // The outcome of these is unknown or refused: their seqs may or may not
    // be taken, so the cache must not guess.
    for (std::size_t j = from; j < inserts.size(); ++j) {
      last_seq_.erase(inserts[j].message->chat.str());
    }
    return false;
  };

  if (inserts.empty()) return true;
  {
    std::unordered_map<std::string, std::uint64_t> next;
    for (auto& insert : inserts) {
      const std::string& key = insert.message->chat.str();
      insert.message->seq = ++next.try_emplace(key, last_seq_[key]).first->second;
    }
  }
  std::size_t start = 0;
  for (std::size_t round = 0; start < inserts.size(); ++round) {
    if (round == kMaxRounds) {
      spdlog::error("mongo: {} messages refused after {} sequence conflicts in one batch",
                    inserts.size() - start, kMaxRounds);
      return give_up(start);
    }
    Bson reply;
    bson_error_t error;
    const bool ok = execute_bulk_insert(inserts, start, reply, error);
    const BulkOutcome outcome = parse_bulk_reply(reply.get());
    if (ok && !outcome.write_concern_error) {
      commit(start, inserts.size());
      return true;
    }
    if (outcome.write_concern_error) {
      // Written, but not as durably as the write concern asks: not acknowledged.
      spdlog::error("mongo: write concern not satisfied: {}", reply.json());
      unreachable_ = true;
      return give_up(start);
    }
    // Ordered: everything before the refused document is committed; without a
    // refusal (a dropped connection) only what the server counted as inserted.
    const std::size_t stopped = std::min(
        inserts.size(), start + (outcome.error_index ? *outcome.error_index : outcome.inserted));
    commit(start, stopped);
    if (!outcome.error_index || outcome.error_code != kDuplicateKey || stopped >= inserts.size()) {
      failed(error, "insert messages");
      return give_up(stopped);
    }
    if (!absorb_stored(inserts, stopped + 1, results)) return give_up(stopped);
    const auto resumed = resolve_duplicate_key(inserts, stopped, batch, results);
    if (!resumed) return give_up(stopped);
    start = *resumed;
  }
  return true;
}

bool BatchWriter::execute_bulk_insert(const std::vector<Insert>& inserts, std::size_t start,
                                      Bson& reply, bson_error_t& error) {
  Bulk bulk(mongoc_collection_create_bulk_operation_with_opts(messages_.get(), nullptr));
  for (std::size_t j = start; j < inserts.size(); ++j) {
    Bson document;
    append_message_document(document.get(), *inserts[j].message);
    if (!mongoc_bulk_operation_insert_with_opts(bulk.get(), document.get(), nullptr, &error)) {
      return false;
    }
  }
  return mongoc_bulk_operation_execute(bulk.get(), reply.get(), &error) != 0;
}

// The messages are committed and will be acknowledged whatever happens here:
// a failed update only leaves `chats` behind until the chat's next message.
void BatchWriter::update_chats(const std::vector<AppendResult>& results,
                               std::int64_t timestamp_ms) {
  struct Touched {
    const chat::ChatKey* chat;
    std::uint64_t last_seq;
    bool message;  ///< A message, not only changes: the chat has new activity.
  };
  std::vector<Touched> touched;
  for (const auto& result : results) {
    if (result.error != StoreError::none || result.duplicate || !result.message) continue;
    const chat::Message& message = *result.message;
    const bool is_message = message.kind == chat::EntryKind::message;
    const auto same = [&](const Touched& entry) { return *entry.chat == message.chat; };
    if (const auto found = std::find_if(touched.begin(), touched.end(), same);
        found != touched.end()) {
      found->last_seq = std::max(found->last_seq, message.seq);
      found->message = found->message || is_message;
    } else {
      touched.push_back(Touched{&message.chat, message.seq, is_message});
    }
  }
  if (touched.empty()) return;
  Bson bulk_options, upsert;
  bson_append_bool(bulk_options.get(), "ordered", -1, false);
  bson_append_bool(upsert.get(), "upsert", -1, true);
  Bulk bulk(mongoc_collection_create_bulk_operation_with_opts(chats_.get(), bulk_options.get()));
  bson_error_t error;
  for (const auto& [chat, last_seq, message] : touched) {
    Bson selector, update;
    append_utf8(selector.get(), "_id", chat->str());
    append_chat_update(update.get(), *chat, last_seq,
                       message ? std::optional(timestamp_ms) : std::nullopt);
    if (!mongoc_bulk_operation_update_one_with_opts(bulk.get(), selector.get(), update.get(),
                                                    upsert.get(), &error)) {
      failed(error, "build the chats update");
      return;
    }
  }
  Bson reply;
  if (mongoc_bulk_operation_execute(bulk.get(), reply.get(), &error) == 0) {
    failed(error, "update chats (the messages are stored)");
  }
}

bool BatchWriter::failed(const bson_error_t& error, const char* what) {
  if (is_connection_error(error)) unreachable_ = true;
  spdlog::error("mongo: cannot {}: {} (domain {}, code {})", what, message_of(error), error.domain,
                error.code);
  return false;
}

}  // namespace chatd::store::mongo
