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

std::shared_ptr<chat::Message> make_message(const chat::PendingMessage& pending,
                                            std::int64_t timestamp_ms) {
  auto message = std::make_shared<chat::Message>(pending.chat);
  message->id = chat::make_message_id(timestamp_ms);
  message->sender = pending.sender;
  message->text = pending.text;
  message->timestamp_ms = timestamp_ms;
  message->client_id = pending.client_id;
  message->hooks = pending.hooks;
  message->origin = pending.origin;
  message->received_at = pending.received_at;
  return message;
}

AppendResult duplicate_of(const chat::Message& original, chat::ConnectionId origin) {
  auto copy = std::make_shared<chat::Message>(original);
  copy->origin = origin;
  return AppendResult{StoreError::none, std::move(copy), true};
}

}  // namespace chatd::store
