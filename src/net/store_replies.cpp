#include "net/store_replies.h"

namespace chatd::net {

StoreReply store_reply(store::StoreError error, std::string_view consequence) {
  switch (error) {
    case store::StoreError::overloaded:
      return {"overloaded", "server is overloaded; " + std::string(consequence) + ", retry"};
    case store::StoreError::shutting_down:
      return {"shutting_down", "server is shutting down; " + std::string(consequence)};
    case store::StoreError::none:
    case store::StoreError::unavailable:
      break;
  }
  return {"store_unavailable", "message store unavailable; " + std::string(consequence)};
}

std::string refusal_message(store::Refusal refusal) {
  switch (refusal) {
    case store::Refusal::blocked:
      return "the other user has blocked you; nothing was stored";
    case store::Refusal::not_found:
      return "no message with that seq or id in this chat";
    case store::Refusal::not_your_message:
      return "only the sender may edit or delete a message";
    case store::Refusal::deleted:
      return "the message is deleted";
    case store::Refusal::edit_window_passed:
      return "the message is older than the edit window (EDIT_WINDOW_SECONDS)";
    case store::Refusal::none:
      break;
  }
  return "refused";
}

}  // namespace chatd::net
