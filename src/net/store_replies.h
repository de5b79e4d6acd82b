#pragma once

#include <string>
#include <string_view>

#include "store/store.h"

namespace chatd::net {

/// How a client is told that the store could not do what it asked: the same
/// code and wording on the WebSocket (an error frame) and in REST (a 503).
struct StoreReply {
  std::string_view code;  ///< "overloaded", "shutting_down" or "store_unavailable"
  std::string message;
};

/// `consequence` says what did not happen, e.g. "message not stored". An
/// overloaded or stopping store asks the client to retry; `none` is not an error
/// and answers as `unavailable` would (a caller's bug, never a crash).
StoreReply store_reply(store::StoreError error, std::string_view consequence);

/// The words for a change (or send) the chat's rules refused; its code is
/// store::to_string(refusal).
std::string refusal_message(store::Refusal refusal);

}  // namespace chatd::net
