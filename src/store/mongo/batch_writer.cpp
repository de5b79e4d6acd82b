#include "store/mongo/batch_writer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "store/mongo/bson_mapping.h"
#include "store/mongo/mongo_connection.h"

namespace chatd::store::mongo {
namespace {

// Insert rounds in one batch before its rest is given up. Each round is a
// refused document (a retried client id, a sealed seq), so this is only
// reached by a batch of such.
constexpr std::size_t kMaxRounds = 64;
// Reserved seqs an earlier batch left unwritten (unfilled_) that one batch
// fills at most.
constexpr std::size_t kMaxFillersPerBatch = 1024;
// Entries per insert command. FerretDB 1.24 inserts in internal batches of
// 100 and, past a refused document, goes on with the next one: a command of
// at most 100 stops at its refusal as MongoDB's ordered insert does, so no
// entry of a chat is stored after one of its earlier entries was refused
// (and moved to a later seq). A group commit of more is several commands,
// each sent once the one before is settled.
constexpr std::size_t kInsertChunk = 100;

// Usernames hold no control characters, so '\n' separates the parts safely.
std::string client_key(const chat::PendingMessage& message) {
  return message.chat.str() + '\n' + message.sender + '\n' + message.client_id;
}

}  // namespace

std::shared_ptr<chat::Message> make_filler(const chat::ChatKey& chat, std::uint64_t seq,
                                           std::int64_t timestamp_ms) {
  auto filler = std::make_shared<chat::Message>(chat);
  filler->id = chat::make_message_id(timestamp_ms);
  filler->seq = seq;
  filler->timestamp_ms = timestamp_ms;
  filler->kind = chat::EntryKind::filler;
  return filler;
}

BatchWriter::BatchWriter(mongoc_client_t* client, const std::string& database)
    : messages_(mongoc_client_get_collection(client, database.c_str(), kMessages)),
      chats_(mongoc_client_get_collection(client, database.c_str(), kChats)) {}

bool BatchWriter::write(std::span<const chat::PendingMessage> batch,
                        std::vector<AppendResult>& results, bool look_up_client_ids) {
  unreachable_ = false;
  fillers_.clear();
  results.assign(batch.size(), AppendResult{StoreError::unavailable, nullptr, false});
  changes_.clear();
  if (look_up_client_ids && !find_originals(batch, results)) return !unreachable_;
  const std::int64_t timestamp = chat::now_ms();
  if (!check_targets(batch, results, timestamp)) return !unreachable_;

  std::vector<Insert> inserts;
  std::vector<ChatPart> parts;
  std::unordered_map<std::string, std::size_t> part_of;
  std::unordered_map<std::string, std::size_t> first_with_client_id;
  std::vector<std::pair<std::size_t, std::size_t>> repeats;  // (index, index of the first)
  bool ok = true;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const chat::PendingMessage& pending = batch[i];
    if (results[i].duplicate) {  // stored before this batch
      // An edit or delete stored without its effect (a failed write) gets it now.
      if (chat::is_change(pending.kind) && !apply_to_target(*results[i].message, true)) {
        results[i] = AppendResult{StoreError::unavailable, nullptr, false};
      }
      continue;
    }
    if (results[i].error == StoreError::none) continue;  // refused by check_targets
    if (!pending.client_id.empty()) {
      const auto [first, fresh] = first_with_client_id.emplace(client_key(pending), i);
      if (!fresh) {  // the same send twice in one batch: the first one counts
        repeats.emplace_back(i, first->second);
        continue;
      }
    }
    if (pending.kind == chat::EntryKind::filler) {  // a seal: its seq is named, not reserved
      auto filler = make_filler(pending.chat, pending.target, timestamp);
      inserts.push_back(Insert{i, std::move(filler)});
      continue;
    }
    const auto [found, fresh] = part_of.try_emplace(pending.chat.str(), parts.size());
    if (fresh) {
      parts.emplace_back();
      parts.back().chat = &pending.chat;
    }
    ChatPart& part = parts[found->second];
    part.entries.push_back(i);
    part.has_message = part.has_message || pending.kind == chat::EntryKind::message;
    if (pending.kind == chat::EntryKind::block || pending.kind == chat::EntryKind::unblock) {
      if (!part.blocker.empty() && part.blocker != pending.sender) part.both_block = true;
      part.blocker = pending.sender;
      part.blocker_blocks = pending.kind == chat::EntryKind::block;
    }
  }
  for (const ChatPart& part : parts) {
    ok = reserve(part, batch, results, inserts, timestamp);
    if (!ok) break;  // what was reserved is still written; the rest is unavailable
  }
  // The seqs earlier batches reserved and could not write, filled now.
  const std::size_t fill = std::min(unfilled_.size(), kMaxFillersPerBatch);
  for (std::size_t j = 0; j < fill; ++j) {
    inserts.push_back(
        Insert{kFiller, make_filler(unfilled_[j].first, unfilled_[j].second, timestamp)});
  }
  unfilled_.erase(unfilled_.begin(), unfilled_.begin() + static_cast<std::ptrdiff_t>(fill));
  insert_all(inserts, batch, results);
  for (const Insert& insert : inserts) {  // committed: the edits' and deletes' effects
    if (insert.index == kFiller) continue;
    AppendResult& result = results[insert.index];
    if (result.error != StoreError::none || result.duplicate || !result.message) continue;
    if (!apply_to_target(*result.message, false)) {
      // Stored without its effect: the retry (the same client id) repairs it.
      result = AppendResult{StoreError::unavailable, nullptr, false};
    }
  }
  for (const auto& [index, first] : repeats) {
    const AppendResult& original = results[first];
    if (original.error != StoreError::none) continue;
    results[index] = original.message ? duplicate_of(*original.message, batch[index].origin)
                                      : original;  // refused by the chat's rules: so is this
  }
  return !unreachable_;
}

// One query for every client id in the batch: sends that were stored before
// (a v2 client's retry, a second import) complete with the original. Only
// where the server has no unique index on client ids (FerretDB 1.x); with
// one, the insert's refusal finds the original (resolve_duplicate_key).
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

// The part's entries under the chat's rules as `blocks` has them, in batch
// order, followed through the part's own blocks and unblocks: the refused
// ones get their answer in `outcomes` (nullopt: stored).
std::vector<std::optional<AppendResult>> BatchWriter::evaluate(
    const ChatPart& part, std::span<const chat::PendingMessage> batch, BlockState blocks,
    std::int64_t timestamp_ms, bool fold_blocks, std::vector<MutableMessage>& entries) {
  const chat::ChatKey& chat = *part.chat;
  std::vector<std::optional<AppendResult>> outcomes(part.entries.size());
  entries.assign(part.entries.size(), nullptr);
  for (std::size_t k = 0; k < part.entries.size(); ++k) {
    const std::size_t index = part.entries[k];
    const chat::PendingMessage& pending = batch[index];
    if (refused_when_blocked(pending.kind) && blocks.blocks(chat, chat.peer_of(pending.sender))) {
      outcomes[k] = refused(Refusal::blocked);
      continue;
    }
    const auto change = changes_.find(index);
    entries[k] = change != changes_.end() ? std::make_shared<chat::Message>(*change->second)
                                          : make_message(pending, timestamp_ms);
    if (pending.kind == chat::EntryKind::block || pending.kind == chat::EntryKind::unblock) {
      const bool blocking = pending.kind == chat::EntryKind::block;
      entries[k]->text.clear();
      if (blocks.blocks(chat, pending.sender) == blocking) {
        // Blocking twice: nothing stored, answered with seq 0.
        outcomes[k] = AppendResult{StoreError::none, entries[k], true};
        continue;
      }
      if (!fold_blocks) {  // both users changed blocks in one batch (rare): one by one
        const Update stored = store_block(chat, pending.sender, blocking);
        if (stored != Update::changed) {
          outcomes[k] = stored == Update::failed
                            ? AppendResult{StoreError::unavailable, nullptr, false}
                            : AppendResult{StoreError::none, entries[k], true};
          continue;
        }
      }
      blocks.set(chat, pending.sender, blocking);
    }
  }
  return outcomes;
}

// Reserves the part's seqs and numbers its entries. The number reserved is
// what the chat's rules let through as this writer last saw them
// (known_blocks_), so a refused send or a block that changes nothing takes
// no seq. The findAndModify returns the chat as it was just before: when its
// blocks are not what was assumed (another instance changed them), the
// entries are judged again under the real ones; seqs reserved beyond them
// get fillers, and what more they need is reserved once more.
bool BatchWriter::reserve(const ChatPart& part, std::span<const chat::PendingMessage> batch,
                          std::vector<AppendResult>& results, std::vector<Insert>& inserts,
                          std::int64_t timestamp_ms) {
  const chat::ChatKey& chat = *part.chat;
  const bool fold_blocks = !part.blocker.empty() && !part.both_block;
  const std::optional<std::pair<std::string_view, bool>> block =
      fold_blocks
          ? std::optional(std::pair<std::string_view, bool>(part.blocker, part.blocker_blocks))
          : std::nullopt;
  const std::optional<std::int64_t> activity =
      part.has_message ? std::optional(timestamp_ms) : std::nullopt;
  if (known_blocks_.size() > kMaxKnownChats) known_blocks_.clear();
  const auto known = known_blocks_.find(chat.str());
  const BlockState assumed = known != known_blocks_.end() ? known->second : BlockState{};

  std::vector<MutableMessage> entries;
  // Blocks stored one by one (not folded) are only stored once judged for real.
  auto outcomes = fold_blocks || part.blocker.empty()
                      ? evaluate(part, batch, assumed, timestamp_ms, fold_blocks, entries)
                      : std::vector<std::optional<AppendResult>>(part.entries.size());
  const auto stored_count = [&] {
    return static_cast<std::uint64_t>(
        std::count_if(outcomes.begin(), outcomes.end(), [](const auto& o) { return !o; }));
  };
  std::uint64_t count = stored_count();
  Reservation range;
  if (!find_and_reserve(chat, count, activity, block, range)) return false;
  std::vector<std::uint64_t> seqs;
  for (std::uint64_t seq = range.last + 1; seq <= range.last + count; ++seq) seqs.push_back(seq);
  if (!(range.blocks == assumed) || (!fold_blocks && !part.blocker.empty())) {
    outcomes = evaluate(part, batch, range.blocks, timestamp_ms, fold_blocks, entries);
    const std::uint64_t needed = stored_count();
    if (needed > seqs.size()) {
      Reservation more;
      if (!find_and_reserve(chat, needed - seqs.size(), activity, block, more)) {
        for (const std::uint64_t seq : seqs)
          inserts.push_back(Insert{kFiller, make_filler(chat, seq, timestamp_ms)});
        return false;
      }
      for (std::uint64_t seq = more.last + 1; seqs.size() < needed; ++seq) seqs.push_back(seq);
    }
  }
  BlockState after = range.blocks;
  std::size_t next = 0;
  for (std::size_t k = 0; k < part.entries.size(); ++k) {
    const std::size_t index = part.entries[k];
    if (outcomes[k]) {
      results[index] = std::move(*outcomes[k]);
      continue;
    }
    const chat::PendingMessage& pending = batch[index];
    if (pending.kind == chat::EntryKind::block || pending.kind == chat::EntryKind::unblock) {
      after.set(chat, pending.sender, pending.kind == chat::EntryKind::block);
    }
    entries[k]->seq = seqs[next++];
    inserts.push_back(Insert{index, std::move(entries[k])});
  }
  for (; next < seqs.size(); ++next) {
    inserts.push_back(Insert{kFiller, make_filler(chat, seqs[next], timestamp_ms)});
  }
  known_blocks_[chat.str()] = after;
  return true;
}

// One findAndModify: adds `count` to the chat's last_seq (with its activity
// and blocks, append_chat_reservation) and returns the chat as it was.
bool BatchWriter::find_and_reserve(const chat::ChatKey& chat, std::uint64_t count,
                                   std::optional<std::int64_t> activity,
                                   std::optional<std::pair<std::string_view, bool>> block,
                                   Reservation& range) {
  Bson query, update, reply;
  append_utf8(query.get(), "_id", chat.str());
  append_chat_reservation(update.get(), chat, count, activity, block);
  const FindAndModifyOpts options(mongoc_find_and_modify_opts_new());
  mongoc_find_and_modify_opts_set_update(options.get(), update.get());
  // The whole document comes back (FerretDB 1.x takes no projection here); it is small.
  mongoc_find_and_modify_opts_set_flags(options.get(), MONGOC_FIND_AND_MODIFY_UPSERT);
  bson_error_t error;
  // Two instances creating one chat's document at once: the upsert that
  // loses is refused on _id (FerretDB does not retry it as MongoDB does),
  // and the document is there when it is sent again.
  bool reserved = false;
  for (int attempt = 0; attempt < 3 && !reserved; ++attempt) {
    if (attempt > 0) {  // the driver filled it with the failed attempt's reply
      bson_destroy(reply.get());
      bson_init(reply.get());
    }
    reserved = mongoc_collection_find_and_modify_with_opts(chats_.get(), query.get(), options.get(),
                                                           reply.get(), &error);
    if (!reserved && error.code != static_cast<std::uint32_t>(kDuplicateKey)) break;
  }
  if (!reserved) {
    // Unknown whether the reservation was made: if it was, its seqs stay
    // empty until another instance seals them.
    return failed(error, "reserve seqs");
  }
  range = Reservation{};
  bson_iter_t iter;
  if (bson_iter_init_find(&iter, reply.get(), "value") && BSON_ITER_HOLDS_DOCUMENT(&iter)) {
    std::uint32_t length = 0;
    const std::uint8_t* data = nullptr;
    bson_iter_document(&iter, &length, &data);
    bson_t before;
    if (bson_init_static(&before, data, length)) {
      range.last = last_seq_of(&before);
      range.blocks = block_state_of(&before, chat);
    }
  }
  return true;
}

bool BatchWriter::insert_all(std::vector<Insert>& inserts,
                             std::span<const chat::PendingMessage> batch,
                             std::vector<AppendResult>& results) {
  const auto commit = [&](std::size_t from, std::size_t to) {
    for (std::size_t j = from; j < to; ++j) {
      if (inserts[j].index == kFiller) {
        fillers_.push_back(inserts[j].message);
        continue;
      }
      results[inserts[j].index] = AppendResult{StoreError::none, inserts[j].message, false};
    }
  };

  std::size_t start = 0;
  std::size_t refusals = 0;
  while (start < inserts.size()) {
    if (refusals == kMaxRounds) {
      spdlog::error("mongo: {} entries refused after {} refusals in one batch",
                    inserts.size() - start, kMaxRounds);
      give_up(inserts, start, results);
      return false;
    }
    Bson reply;
    bson_error_t error;
    const std::size_t end = std::min(inserts.size(), start + kInsertChunk);
    const bool ok = execute_bulk_insert(inserts, start, end, reply, error);
    const BulkOutcome outcome = parse_bulk_reply(reply.get());
    if (ok && !outcome.write_concern_error) {
      commit(start, end);
      start = end;
      continue;
    }
    if (outcome.write_concern_error) {
      // Written, but not as durably as the write concern asks: not acknowledged.
      spdlog::error("mongo: write concern not satisfied: {}", reply.json());
      unreachable_ = true;
      give_up(inserts, start, results);
      return false;
    }
    // Ordered: everything before the refused document is committed; without a
    // refusal (a dropped connection) only what the server counted as inserted.
    const std::size_t stopped = std::min(
        inserts.size(), start + (outcome.error_index ? *outcome.error_index : outcome.inserted));
    commit(start, stopped);
    ++refusals;
    if (!outcome.error_index || outcome.error_code != kDuplicateKey || stopped >= end) {
      failed(error, "insert entries");
      give_up(inserts, stopped, results);
      return false;
    }
    if (!absorb_stored(inserts, stopped + 1, results)) {
      give_up(inserts, stopped, results);
      return false;
    }
    const auto resumed = resolve_duplicate_key(inserts, stopped, batch, results);
    if (!resumed) {
      give_up(inserts, stopped, results);
      return false;
    }
    start = *resumed;
  }
  return true;
}

void BatchWriter::give_up(std::vector<Insert>& inserts, std::size_t from,
                          std::vector<AppendResult>& results) {
  // Their outcome is unknown or refused: the server may hold them. A filler
  // written there next time is refused if so, and fills the seq if not.
  for (std::size_t j = from; j < inserts.size(); ++j) {
    const Insert& insert = inserts[j];
    if (insert.index != kFiller) {
      results[insert.index] = AppendResult{StoreError::unavailable, nullptr, false};
    }
    if (unfilled_.size() < kMaxUnfilled) {
      unfilled_.emplace_back(insert.message->chat, insert.message->seq);
    }
  }
  inserts.resize(from);
}

bool BatchWriter::execute_bulk_insert(const std::vector<Insert>& inserts, std::size_t start,
                                      std::size_t end, Bson& reply, bson_error_t& error) {
  Bulk bulk(mongoc_collection_create_bulk_operation_with_opts(messages_.get(), nullptr));
  for (std::size_t j = start; j < end; ++j) {
    Bson document;
    append_message_document(document.get(), *inserts[j].message);
    if (!mongoc_bulk_operation_insert_with_opts(bulk.get(), document.get(), nullptr, &error)) {
      return false;
    }
  }
  return mongoc_bulk_operation_execute(bulk.get(), reply.get(), &error) != 0;
}

bool BatchWriter::failed(const bson_error_t& error, const char* what) {
  if (is_connection_error(error)) unreachable_ = true;
  spdlog::error("mongo: cannot {}: {} (domain {}, code {})", what, message_of(error), error.domain,
                error.code);
  return false;
}

}  // namespace chatd::store::mongo
