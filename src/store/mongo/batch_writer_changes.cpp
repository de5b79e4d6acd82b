// BatchWriter, continued: the changes of a chat's order (edits, deletes,
// blocks; see batch_writer.h) and the chat's rules they follow
// (store::check_change, store::refused_when_blocked).

#include <spdlog/spdlog.h>

#include <limits>

#include "store/mongo/batch_writer.h"
#include "store/mongo/bson_mapping.h"

namespace chatd::store::mongo {

// Each edit and delete of the batch: its target read, the rules applied
// (store::check_change). One that passes keeps its entry in changes_, to be
// numbered with the reservation; its effect on the target comes after the
// insert (write()), so a failed insert leaves the message as it was. An
// outage between the two leaves the entry without its effect: the change is
// answered unavailable, and its retry (the same client id) finds the entry
// and applies it. A target that is a message of the same batch is not read
// yet, and is answered message_not_found (clients change acknowledged
// messages).
bool BatchWriter::check_targets(std::span<const chat::PendingMessage> batch,
                                std::vector<AppendResult>& results, std::int64_t timestamp_ms) {
  for (std::size_t index = 0; index < batch.size(); ++index) {
    const chat::PendingMessage& pending = batch[index];
    if (results[index].duplicate) continue;
    if (pending.kind != chat::EntryKind::edit && pending.kind != chat::EntryKind::remove) continue;
    chat::MessagePtr target;
    if (!find_target(pending, target)) return false;
    if (const Refusal refusal = check_change(target.get(), pending, timestamp_ms);
        refusal != Refusal::none) {
      results[index] = refused(refusal);
      continue;
    }
    MutableMessage entry = make_message(pending, timestamp_ms);
    entry->target = target->seq;
    entry->target_id = target->id;
    if (pending.kind == chat::EntryKind::remove) entry->text.clear();
    changes_.emplace(index, std::move(entry));
  }
  return true;
}

bool BatchWriter::find_target(const chat::PendingMessage& change, chat::MessagePtr& target) {
  target = nullptr;
  Bson filter;
  append_utf8(filter.get(), "chat", change.chat.str());
  if (change.target != 0) {
    if (change.target > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return true;  // no seq is that high
    }
    bson_append_int64(filter.get(), "seq", -1, static_cast<std::int64_t>(change.target));
  } else if (bson_oid_is_valid(change.target_id.c_str(), change.target_id.size())) {
    append_id_filter(filter.get(), change.target_id);
  } else {
    return true;  // names no message
  }
  return find_one(filter, nullptr, target, "look up the message a change names");
}

bool BatchWriter::apply_to_target(const chat::Message& entry, bool repair) {
  if (entry.kind != chat::EntryKind::edit && entry.kind != chat::EntryKind::remove) return true;
  Bson selector, update;
  append_utf8(selector.get(), "chat", entry.chat.str());
  bson_append_int64(selector.get(), "seq", -1, static_cast<std::int64_t>(entry.target));
  bson_t set;
  bson_append_document_begin(update.get(), "$set", -1, &set);
  append_utf8(&set, "text", entry.text);
  if (entry.kind == chat::EntryKind::remove) {
    bson_append_bool(&set, "deleted", -1, true);  // final: applying it again changes nothing
  } else {
    bson_append_date_time(&set, "edited_at", -1, entry.timestamp_ms);
    // Never onto a tombstone (another instance may have deleted it since
    // the check), and a repair never over a later edit.
    append_not_deleted(selector.get());
    if (repair) {
      BsonPtr not_later(BCON_NEW("$or", "[", "{", "edited_at", "{", "$exists", BCON_BOOL(false),
                                 "}", "}", "{", "edited_at", "{", "$lt",
                                 BCON_DATE_TIME(entry.timestamp_ms), "}", "}", "]"));
      bson_concat(selector.get(), not_later.get());
    }
  }
  bson_append_document_end(update.get(), &set);
  bson_error_t error;
  if (!mongoc_collection_update_one(messages_.get(), selector.get(), update.get(), nullptr, nullptr,
                                    &error)) {
    return failed(error, "apply a change to its message");
  }
  return true;
}

// Conditional (append_block_update): used when both users of a chat change
// blocks in one batch, which one reservation cannot carry.
BatchWriter::Update BatchWriter::store_block(const chat::ChatKey& chat, const std::string& user,
                                             bool blocking) {
  Bson selector, update, options, reply;
  append_block_update(selector.get(), update.get(), chat, user, blocking);
  bson_append_bool(options.get(), "upsert", -1, blocking);
  bson_error_t error;
  if (!mongoc_collection_update_one(chats_.get(), selector.get(), update.get(), options.get(),
                                    reply.get(), &error)) {
    if (blocking && error.code == static_cast<std::uint32_t>(kDuplicateKey)) {
      return Update::unchanged;  // blocks already
    }
    failed(error, blocking ? "store a block" : "remove a block");
    return Update::failed;
  }
  const std::int64_t changed = integer_field(reply.get(), "matchedCount").value_or(0) +
                               integer_field(reply.get(), "upsertedCount").value_or(0);
  return changed > 0 ? Update::changed : Update::unchanged;
}

}  // namespace chatd::store::mongo
