#include "store/mongo/legacy_import.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "chat/username.h"
#include "store/mongo/bson_mapping.h"
#include "store/mongo/mongo_connection.h"

namespace chatd::store::mongo {
namespace {

constexpr const char* kLegacyDatabase = "CatalogServiceDB";
constexpr std::size_t kMaxExamples = 10;

bool valid_name(std::string_view name) {
  return !chat::validate_username(name).has_value();
}

std::string id_text(const bson_iter_t& id) {
  if (BSON_ITER_HOLDS_OID(&id)) {
    char hex[25];
    bson_oid_to_string(bson_iter_oid(&id), hex);
    return std::string(hex, 24);
  }
  if (BSON_ITER_HOLDS_UTF8(&id)) {
    std::uint32_t length = 0;
    const char* text = bson_iter_utf8(&id, &length);
    return std::string(text, length);
  }
  Bson value;  // anything else: the JSON of {"_id": value}, stable across runs
  bson_append_iter(value.get(), "_id", -1, &id);
  return value.json();
}

void skip(ImportSummary& summary, const std::string& reason, const LegacyChat& chat) {
  ++summary.skipped[reason];
  if (summary.examples.size() < kMaxExamples && reason.starts_with("chat:")) {
    summary.examples.push_back("_id " + chat.source_id + " (chat_id \"" + chat.chat_id +
                               "\"): " + reason.substr(6));
  }
}

// Appends one chat's messages and waits for all of them.
struct Completion {
  std::mutex mutex;
  std::condition_variable done;
  std::size_t left = 0;
  std::size_t imported = 0, present = 0, failed = 0;
  StoreError error = StoreError::none;
};

bool import_chat(const LegacyChat& chat, Store& target, ImportSummary& summary) {
  if (chat.chat_id.empty()) {
    skip(summary, "chat: no chat_id string", chat);
    return true;
  }
  if (chat.messages_missing) {
    skip(summary, "chat: no messages array", chat);
    return true;
  }
  std::vector<std::string> senders;
  for (const auto& message : chat.messages) {
    if (valid_name(message.sender) &&
        std::find(senders.begin(), senders.end(), message.sender) == senders.end()) {
      senders.push_back(message.sender);
    }
  }
  const auto resolved = resolve_participants(chat.chat_id, senders);
  if (const auto* reason = std::get_if<std::string>(&resolved)) {
    skip(summary, "chat: " + *reason, chat);
    return true;
  }
  const auto& users = std::get<Participants>(resolved);
  const chat::ChatKey key = chat::ChatKey::of(users.first, users.second);

  std::vector<chat::PendingMessage> pending;
  for (std::size_t i = 0; i < chat.messages.size(); ++i) {
    const LegacyMessage& message = chat.messages[i];
    if (!valid_name(message.sender)) {
      skip(summary, "message: missing or invalid sender", chat);
    } else if (message.text.empty()) {
      skip(summary, "message: missing or empty text", chat);
    } else if (!key.has_participant(message.sender)) {
      skip(summary, "message: sender is not one of the chat's two users", chat);
    } else {
      pending.push_back(
          chat::PendingMessage{key, message.sender, message.text, legacy_client_id(chat, i), 0});
    }
  }
  if (pending.empty()) {
    skip(summary, "chat: no message to import", chat);
    return true;
  }

  auto completion = std::make_shared<Completion>();
  completion->left = pending.size();
  // Queued in order, so the store gives them seqs in the old order.
  for (auto& message : pending) {
    target.append(std::move(message), [completion](AppendResult result) {
      std::lock_guard lock(completion->mutex);
      if (result.error != StoreError::none) {
        ++completion->failed;
        completion->error = result.error;
      } else if (result.duplicate) {
        ++completion->present;
      } else {
        ++completion->imported;
      }
      if (--completion->left == 0) completion->done.notify_all();
    });
  }
  std::unique_lock lock(completion->mutex);
  completion->done.wait(lock, [&] { return completion->left == 0; });
  summary.messages_imported += completion->imported;
  summary.messages_already_present += completion->present;
  summary.messages_failed += completion->failed;
  if (completion->failed != 0) {
    summary.error = "the store refused messages of chat_id \"" + chat.chat_id + "\" (" +
                    std::string(to_string(completion->error)) +
                    "); the import stopped there. Run the command again to finish it";
    return false;
  }
  ++summary.chats_imported;
  return true;
}

}  // namespace

std::variant<Participants, std::string> resolve_participants(
    std::string_view chat_id, const std::vector<std::string>& senders) {
  std::vector<Participants> candidates;
  for (auto cut = chat_id.find('_'); cut != std::string_view::npos;
       cut = chat_id.find('_', cut + 1)) {
    const std::string_view left = chat_id.substr(0, cut), right = chat_id.substr(cut + 1);
    if (valid_name(left) && valid_name(right)) {
      candidates.push_back(Participants{std::string(left), std::string(right)});
    }
  }
  if (candidates.empty()) return std::string("chat id is not two usernames joined by '_'");
  if (candidates.size() == 1) return candidates.front();

  const auto has_every_sender = [&](const Participants& pair) {
    return std::all_of(senders.begin(), senders.end(), [&](const std::string& sender) {
      return sender == pair.first || sender == pair.second;
    });
  };
  std::erase_if(candidates, [&](const Participants& pair) { return !has_every_sender(pair); });
  if (candidates.empty()) {
    return std::string("ambiguous chat id, and no split of it has every sender as a user");
  }
  if (candidates.size() > 1) {
    // The old service sorted the two names before joining them.
    std::erase_if(candidates, [](const Participants& pair) { return pair.second < pair.first; });
  }
  if (candidates.size() == 1) return candidates.front();
  return std::string("ambiguous chat id, and the senders do not tell the two users apart");
}

LegacyChat parse_legacy_document(const bson_t* document) {
  LegacyChat chat;
  bson_iter_t iter;
  if (bson_iter_init_find(&iter, document, "_id")) chat.source_id = id_text(iter);
  chat.chat_id = utf8_field(document, "chat_id").value_or("");
  bson_iter_t messages;
  if (!bson_iter_init_find(&iter, document, "messages") || !BSON_ITER_HOLDS_ARRAY(&iter) ||
      !bson_iter_recurse(&iter, &messages)) {
    chat.messages_missing = true;
    return chat;
  }
  while (bson_iter_next(&messages)) {
    LegacyMessage message;
    bson_iter_t field;
    if (BSON_ITER_HOLDS_DOCUMENT(&messages) && bson_iter_recurse(&messages, &field)) {
      while (bson_iter_next(&field)) {
        if (!BSON_ITER_HOLDS_UTF8(&field)) continue;
        const std::string_view name = bson_iter_key(&field);
        std::uint32_t length = 0;
        const char* text = bson_iter_utf8(&field, &length);
        if (name == "sender") message.sender.assign(text, length);
        if (name == "text") message.text.assign(text, length);
      }
    }
    chat.messages.push_back(std::move(message));
  }
  return chat;
}

std::string legacy_client_id(const LegacyChat& chat, std::size_t index) {
  return "legacy:" + chat.source_id + ":" + std::to_string(index);
}

ImportSummary import_legacy(const std::string& source_uri, const std::string& collection,
                            Store& target) {
  ImportSummary summary;
  const Connection source(source_uri, kLegacyDatabase, "--from-uri");
  spdlog::info("import-legacy: reading {}.{} at {}", source.database(), collection,
               source.description());
  const PooledClient client(source.pool());
  const Collection chats = client.collection(source.database(), collection.c_str());
  Bson filter, options;
  bson_t sort;
  bson_append_document_begin(options.get(), "sort", -1, &sort);
  bson_append_int32(&sort, "_id", -1, 1);  // a re-run walks the same order
  bson_append_document_end(options.get(), &sort);
  Cursor cursor(
      mongoc_collection_find_with_opts(chats.get(), filter.get(), options.get(), nullptr));
  const bson_t* document = nullptr;
  while (mongoc_cursor_next(cursor.get(), &document)) {
    ++summary.chats_seen;
    if (!import_chat(parse_legacy_document(document), target, summary)) return summary;
  }
  bson_error_t error;
  if (mongoc_cursor_error(cursor.get(), &error)) {
    summary.error = "cannot read " + source.database() + "." + collection + ": " +
                    std::string(message_of(error));
  }
  return summary;
}

}  // namespace chatd::store::mongo
