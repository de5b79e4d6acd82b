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

}  // namespace chatd::net
