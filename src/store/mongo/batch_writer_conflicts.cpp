// BatchWriter, continued: what happens after the server refused a document
// of an ordered bulk insert (see batch_writer.h for the design).

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>

#include "store/mongo/batch_writer.h"
#include "store/mongo/bson_mapping.h"

namespace chatd::store::mongo {

// MongoDB stops an ordered insert at its first error. FerretDB 1.24 does not:
// after a refusal it goes on with its next internal batch (of 100). Whatever
// of the rest got stored is therefore looked up by _id (chatd made the ids),
// committed with the seq it was stored with, and taken out of the retry, so
// nothing is stored twice and no seq is left empty on either server.
bool BatchWriter::absorb_stored(std::vector<Insert>& inserts, std::size_t from,
                                std::vector<AppendResult>& results) {
  if (from >= inserts.size()) return true;
  std::vector<std::string> ids;
  for (std::size_t j = from; j < inserts.size(); ++j) ids.push_back(inserts[j].message->id);
  Bson filter;
  append_ids_filter(filter.get(), ids);
  Cursor cursor(mongoc_collection_find_with_opts(messages_.get(), filter.get(), nullptr, nullptr));
  std::vector<std::string> stored;
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    auto message = std::const_pointer_cast<chat::Message>(message_from_document(document));
    const auto same_id = [&](const Insert& insert) {
      return message && insert.message->id == message->id;
    };
    const auto found =
        std::find_if(inserts.begin() + static_cast<std::ptrdiff_t>(from), inserts.end(), same_id);
    if (found == inserts.end()) continue;
    message->origin = found->message->origin;
    message->received_at = found->message->received_at;
    if (found->index != kFiller) {
      results[found->index] = AppendResult{StoreError::none, std::move(message), false};
    } else {
      fillers_.push_back(std::move(message));
    }
    stored.push_back(found->message->id);
  }
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) return failed(error, "look up stored messages");
  if (stored.empty()) return true;
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true)) {
    spdlog::warn(
        "mongo: the server went on with an ordered insert after refusing a document "
        "(FerretDB does); chatd keeps what it stored");
  }
  std::erase_if(inserts, [&](const Insert& insert) {
    return std::find(stored.begin(), stored.end(), insert.message->id) != stored.end();
  });
  return true;
}

// inserts[refused] hit a unique index. Either its seq is taken: another
// instance sealed it (this insert came after MONGO_SEAL_SECONDS), or the
// chat's last_seq was behind its entries (a document written by a chatd
// before reservations); or, with a unique client-id index, the same client
// id was stored meanwhile (the send is a duplicate). Returns where the bulk
// resumes, nullopt when the server could not tell.
std::optional<std::size_t> BatchWriter::resolve_duplicate_key(
    std::vector<Insert>& inserts, std::size_t refused, std::span<const chat::PendingMessage> batch,
    std::vector<AppendResult>& results) {
  // The refused document may be this writer's own, stored by an earlier
  // attempt whose reply was lost (the driver retries writes): then it is
  // committed, not a conflict.
  const std::string own_id = inserts[refused].message->id;
  if (!absorb_stored(inserts, refused, results)) return std::nullopt;
  if (refused >= inserts.size() || inserts[refused].message->id != own_id) return refused;
  Insert& insert = inserts[refused];
  const chat::ChatKey chat = insert.message->chat;
  const bool filler = insert.message->kind == chat::EntryKind::filler;
  if (filler) {
    // Its seq holds an entry after all (a late insert, or a seal): nothing to fill.
    if (insert.index != kFiller)
      results[insert.index] = AppendResult{StoreError::none, nullptr, true};
    inserts.erase(inserts.begin() + static_cast<std::ptrdiff_t>(refused));
    return refused;
  }
  const chat::PendingMessage& pending = batch[insert.index];
  if (!pending.client_id.empty()) {
    Bson filter;
    append_client_id_filter(filter.get(), pending);
    chat::MessagePtr original;
    if (!find_one(filter, nullptr, original, "look up a client id")) return std::nullopt;
    if (original) {
      results[insert.index] = duplicate_of(*original, pending.origin);
      insert =
          Insert{kFiller, make_filler(chat, insert.message->seq, insert.message->timestamp_ms)};
      return refused;  // its seq is filled instead
    }
  }
  // Its seq is taken: last_seq is raised past the chat's stored entries, and
  // the chat's entries from here (not its fillers, whose seqs are still this
  // writer's) take a new reservation.
  Bson filter, newest;
  HistoryQuery last_one;
  last_one.limit = 0;              // the history options ask for limit + 1: the newest entry
  last_one.messages_only = false;  // changes hold seqs too
  append_history_filter(filter.get(), chat, last_one);
  append_history_options(newest.get(), last_one);
  chat::MessagePtr last;
  if (!find_one(filter, &newest, last, "read a chat's last seq")) return std::nullopt;
  if (last) {
    Bson selector;
    append_utf8(selector.get(), "_id", chat.str());
    BsonPtr raise(
        BCON_NEW("$max", "{", "last_seq", BCON_INT64(static_cast<std::int64_t>(last->seq)), "}"));
    bson_error_t error;
    if (!mongoc_collection_update_one(chats_.get(), selector.get(), raise.get(), nullptr, nullptr,
                                      &error)) {
      failed(error, "raise a chat's last_seq");
      return std::nullopt;
    }
  }
  std::uint64_t moving = 0;
  for (std::size_t j = refused; j < inserts.size(); ++j) {
    const chat::Message& later = *inserts[j].message;
    if (later.chat == chat && later.kind != chat::EntryKind::filler) ++moving;
  }
  Reservation range;
  if (!find_and_reserve(chat, moving, std::nullopt, std::nullopt, range)) return std::nullopt;
  spdlog::warn("mongo: seq {} of chat {} is taken (its last entry: {}); {} entries move to {}..{}",
               insert.message->seq, chat.str(), last ? last->seq : 0, moving, range.last + 1,
               range.last + moving);
  // The seqs they leave were reserved by this writer too (as far as it
  // knows): fillers go there, refused in turn where another entry is.
  std::vector<Insert> left;
  std::uint64_t seq = range.last;
  for (std::size_t j = refused; j < inserts.size(); ++j) {
    chat::Message& later = *inserts[j].message;
    if (later.chat != chat || later.kind == chat::EntryKind::filler) continue;
    left.push_back(Insert{kFiller, make_filler(chat, later.seq, later.timestamp_ms)});
    later.seq = ++seq;
  }
  inserts.insert(inserts.end(), std::make_move_iterator(left.begin()),
                 std::make_move_iterator(left.end()));
  return refused;
}

bool BatchWriter::find_one(const Bson& filter, const Bson* options, chat::MessagePtr& found,
                           const char* what) {
  Cursor cursor(mongoc_collection_find_with_opts(messages_.get(), filter.get(),
                                                 options ? options->get() : nullptr, nullptr));
  const bson_t* document = nullptr;
  found = mongoc_cursor_next(cursor.get(), &document) ? message_from_document(document) : nullptr;
  bson_error_t error;
  return !mongoc_cursor_error(cursor.get(), &error) || failed(error, what);
}

}  // namespace chatd::store::mongo
