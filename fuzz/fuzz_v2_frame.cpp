// chat::v2::parse_client_frame, which reads every frame a chat.v2 client sends, and
// parse_edit_body, which reads the REST API's PATCH of a message (the same input).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "chat/frames_v2.h"
#include "fuzz_check.h"

namespace v2 = chatd::chat::v2;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view payload(reinterpret_cast<const char*>(data), size);
  const chatd::chat::FrameLimits limits{1024};
  const auto edit = v2::parse_edit_body(payload, limits);
  if (const auto* change = std::get_if<v2::Change>(&edit)) {
    FUZZ_CHECK(change->kind == chatd::chat::EntryKind::edit);
    FUZZ_CHECK(!change->text.empty() && change->text.size() <= limits.max_text_bytes);
    FUZZ_CHECK(change->client_id.size() <= v2::kMaxClientIdBytes);
  } else {
    FUZZ_CHECK(!std::get<v2::Refusal>(edit).error.code.empty());
  }
  const auto parsed = v2::parse_client_frame(payload, limits);
  if (const auto* refusal = std::get_if<v2::Refusal>(&parsed)) {
    FUZZ_CHECK(!refusal->error.code.empty() && !refusal->error.message.empty());
    FUZZ_CHECK(refusal->client_id.size() <= v2::kMaxClientIdBytes);
    // The error frame for it is JSON a client can read.
    FUZZ_CHECK(
        !v2::error_frame(refusal->error.code, refusal->error.message, refusal->client_id).empty());
    return 0;
  }
  const auto& frame = std::get<v2::ClientFrame>(parsed);
  if (const auto* send = std::get_if<v2::Send>(&frame)) {
    FUZZ_CHECK(!send->client_id.empty() && send->client_id.size() <= v2::kMaxClientIdBytes);
    FUZZ_CHECK(!send->text.empty() && send->text.size() <= limits.max_text_bytes);
  } else if (const auto* history = std::get_if<v2::HistoryRequest>(&frame)) {
    FUZZ_CHECK(history->limit <= v2::kMaxHistoryPage);
  } else if (const auto* read = std::get_if<v2::Read>(&frame)) {
    FUZZ_CHECK(read->seq > 0);
  } else if (const auto* change = std::get_if<v2::Change>(&frame)) {
    FUZZ_CHECK(change->kind == chatd::chat::EntryKind::edit ||
               change->kind == chatd::chat::EntryKind::remove);
    FUZZ_CHECK(!change->client_id.empty() && change->client_id.size() <= v2::kMaxClientIdBytes);
    // It names its message by seq, or else by a 24-character id.
    FUZZ_CHECK(change->seq > 0 || change->id.size() == 24);
    if (change->kind == chatd::chat::EntryKind::edit) {
      FUZZ_CHECK(!change->text.empty() && change->text.size() <= limits.max_text_bytes);
    } else {
      FUZZ_CHECK(change->text.empty());
    }
  }
  return 0;
}
