#pragma once

// Import of the old Python service's data: collection `chats` (database
// `CatalogServiceDB`), one document per chat,
//   { _id, chat_id: "alice_bob", messages: [ {sender, text}, ... ] }
// into any Store (MongoDB or SQLite) through its ordinary append.
//
// Idempotent: every old message gets the client id "legacy:<old _id>:<index>",
// and a store completes an append whose (chat, sender, client id) it already
// has with the original instead of storing it twice. Running the import again
// (or after it stopped half-way) stores only what is missing.
//
// The old chat id is the two names, sorted, joined with "_": "a_b_c" is
// (a, b_c) or (a_b, c). The names are recovered from the split whose two
// halves are valid usernames and which contains every sender of the chat.

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "store/mongo/mongo_handles.h"
#include "store/store.h"

namespace chatd::store::mongo {

struct Participants {
  std::string first;
  std::string second;
  friend bool operator==(const Participants&, const Participants&) = default;
};

/// The two users of an old chat id, or why they cannot be told.
std::variant<Participants, std::string> resolve_participants(
    std::string_view chat_id, const std::vector<std::string>& senders);

struct LegacyMessage {
  std::string sender;  ///< Empty when the old message had no usable sender.
  std::string text;    ///< Empty when it had no usable text.
};

struct LegacyChat {
  std::string source_id;  ///< The old document's _id as text (ObjectId hex, or its JSON).
  std::string chat_id;    ///< Empty when missing or not a string.
  std::vector<LegacyMessage> messages;
  bool messages_missing = false;  ///< `messages` absent or not an array.
};

LegacyChat parse_legacy_document(const bson_t* document);

/// The client id that makes re-imports find what an earlier run stored.
std::string legacy_client_id(const LegacyChat& chat, std::size_t index);

struct ImportSummary {
  std::size_t chats_seen = 0;
  std::size_t chats_imported = 0;  ///< With at least one message stored now or before.
  std::size_t messages_imported = 0;
  std::size_t messages_already_present = 0;
  std::size_t messages_failed = 0;  ///< The store refused; the import stopped there.
  /// Skipped chats and messages, by reason ("chat: ...", "message: ...").
  std::map<std::string, std::size_t> skipped;
  std::vector<std::string> examples;  ///< A few skipped chat ids with their reason.
  std::string error;                  ///< Set when the import stopped early.
};

/// Reads every document of `collection` at `source_uri` (database from the
/// URI path, default CatalogServiceDB) and appends its messages to `target`,
/// one chat at a time and in the old order. Stops at the first message the
/// target refuses (a re-run continues where it stopped). Blocks; run it on a
/// thread that may block (the command's main thread).
ImportSummary import_legacy(const std::string& source_uri, const std::string& collection,
                            Store& target);

}  // namespace chatd::store::mongo
