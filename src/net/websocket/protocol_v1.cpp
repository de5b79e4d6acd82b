#include "net/websocket/protocol_v1.h"

#include "chat/frames.h"
#include "net/store_replies.h"
#include "net/websocket/replay.h"
#include "net/websocket/session.h"

namespace chatd::net::websocket {

boost::asio::awaitable<bool> ProtocolV1::open() {
  return replay_v1(session_);
}

void ProtocolV1::handle(std::string_view payload) {
  if (!session_.take_rate_token()) return;
  const chat::FrameLimits limits{session_.services().options.max_text_bytes};
  auto parsed = chat::parse_v1_frame(payload, session_.chat(), limits);
  if (auto* error = std::get_if<chat::FrameError>(&parsed)) {
    session_.reject(error->code, error->message);
    return;
  }
  auto& request = std::get<chat::SendRequest>(parsed);
  if (session_.services().tokens != nullptr && request.sender != session_.user()) {
    // SPEC §2: with tokens the stored sender is always the token's subject.
    session_.reject("sender_not_authenticated", "sender \"" + request.sender +
                                                    "\" is not the authenticated user \"" +
                                                    session_.user() + "\"");
    return;
  }
  session_.commit(std::move(request.sender), std::move(request.text), {});
}

void ProtocolV1::committed(const store::AppendResult& result, std::string_view client_id) {
  // No echo: the chat's other connections already have it.
  if (result.error != store::StoreError::none) {
    session_.reject_store_error(result.error, "message not stored", client_id);
  } else if (result.refusal != store::Refusal::none) {
    session_.reject(store::to_string(result.refusal), refusal_message(result.refusal), client_id);
  }
}

}  // namespace chatd::net::websocket
