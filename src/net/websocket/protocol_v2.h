#pragma once

#include "chat/token_bucket.h"
#include "net/websocket/protocol.h"

namespace chatd::net::websocket {

/// Protocol v2 (subprotocol chat.v2, docs/protocol.md): typed frames with
/// acks, idempotent sends, history paging, resume, typing, presence and
/// read receipts.
class ProtocolV2 final : public Protocol {
 public:
  explicit ProtocolV2(Session& session);

  boost::asio::awaitable<bool> open() override;
  void handle(std::string_view payload) override;
  void committed(const store::AppendResult& result, std::string_view client_id) override;

 private:
  /// Stores a read receipt, then tells the chat.
  void mark_read(std::uint64_t seq);

  Session& session_;
  chat::TokenBucket typing_rate_;
};

}  // namespace chatd::net::websocket
