#pragma once

#include "net/websocket/protocol.h"

namespace chatd::net::websocket {

/// Protocol v1, the frames of the service chatd replaced (README "Protocol
/// v1"): `{"sender","text"}` in, message frames out, no echo, no events.
class ProtocolV1 final : public Protocol {
 public:
  explicit ProtocolV1(Session& session) : session_(session) {}

  boost::asio::awaitable<bool> open() override;
  void handle(std::string_view payload) override;
  void committed(const store::AppendResult& result, std::string_view client_id) override;

 private:
  Session& session_;
};

}  // namespace chatd::net::websocket
