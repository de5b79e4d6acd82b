#include "net/websocket/protocol.h"

#include "net/websocket/protocol_v1.h"
#include "net/websocket/protocol_v2.h"

namespace chatd::net::websocket {

std::unique_ptr<Protocol> make_protocol(ProtocolVersion version, Session& session) {
  if (version == ProtocolVersion::v2) return std::make_unique<ProtocolV2>(session);
  return std::make_unique<ProtocolV1>(session);
}

}  // namespace chatd::net::websocket
