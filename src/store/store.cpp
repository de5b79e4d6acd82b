#include "store/store.h"

namespace chatd::store {

std::string_view to_string(StoreError error) {
  switch (error) {
    case StoreError::none:
      return "none";
    case StoreError::unavailable:
      return "unavailable";
    case StoreError::overloaded:
      return "overloaded";
    case StoreError::shutting_down:
      return "shutting_down";
  }
  return "unknown";
}

std::string_view to_string(Refusal refusal) {
  switch (refusal) {
    case Refusal::none:
      return "none";
    case Refusal::blocked:
      return "blocked";
    case Refusal::not_found:
      return "message_not_found";
    case Refusal::not_your_message:
      return "not_your_message";
    case Refusal::deleted:
      return "message_deleted";
    case Refusal::edit_window_passed:
      return "edit_window_passed";
  }
  return "unknown";
}

Refusal check_change(const chat::Message* target, const chat::PendingMessage& change,
                     std::int64_t now_ms) {
  if (target == nullptr || chat::is_change(target->kind)) return Refusal::not_found;
  if (target->sender != change.sender) return Refusal::not_your_message;
  if (target->deleted) return Refusal::deleted;
  if (change.kind == chat::EntryKind::edit && change.edit_window_ms > 0 &&
      now_ms - target->timestamp_ms > change.edit_window_ms) {
    return Refusal::edit_window_passed;
  }
  return Refusal::none;
}

bool refused_when_blocked(chat::EntryKind kind) {
  return kind == chat::EntryKind::message || kind == chat::EntryKind::edit;
}

std::shared_ptr<chat::Message> make_message(const chat::PendingMessage& pending,
                                            std::int64_t timestamp_ms) {
  auto message = std::make_shared<chat::Message>(pending.chat);
  message->id = chat::make_message_id(timestamp_ms);
  chat::note_origin(message->id, pending.origin);
  message->sender = pending.sender;
  message->text = pending.text;
  message->timestamp_ms = timestamp_ms;
  message->client_id = pending.client_id;
  message->hooks = pending.hooks;
  message->kind = pending.kind;
  message->target = pending.target;
  message->target_id = pending.target_id;
  message->origin = pending.origin;
  message->received_at = pending.received_at;
  return message;
}

AppendResult refused(Refusal refusal) {
  return AppendResult{StoreError::none, nullptr, false, refusal};
}

AppendResult duplicate_of(const chat::Message& original, chat::ConnectionId origin) {
  auto copy = std::make_shared<chat::Message>(original);
  copy->origin = origin;
  return AppendResult{StoreError::none, std::move(copy), true};
}

}  // namespace chatd::store
