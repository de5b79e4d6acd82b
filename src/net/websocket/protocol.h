#pragma once

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string_view>

#include "net/websocket/admission.h"
#include "store/store.h"

namespace chatd::net::websocket {

class Session;

/// What one protocol version does with a joined connection (docs/protocol.md):
/// what the client sees first, and what each of its frames means. The session
/// asks it "open" and "handle this frame" and never tests the version itself.
///
/// Runs on the session's strand only. Owned by its session.
class Protocol {
 public:
  virtual ~Protocol() = default;

  /// After the join: the history (v1), or the hello and the history or the
  /// resume (v2), paced by the send queue. False when the session closed
  /// meanwhile, so that it reads no frame.
  virtual boost::asio::awaitable<bool> open() = 0;

  /// One text frame from the client, after open().
  virtual void handle(std::string_view payload) = 0;

  /// The store answered a send of this connection: v1 says nothing on
  /// success (no echo), v2 acknowledges. Errors are answered as error frames.
  virtual void committed(const store::AppendResult& result, std::string_view client_id) = 0;
};

std::unique_ptr<Protocol> make_protocol(ProtocolVersion version, Session& session);

}  // namespace chatd::net::websocket
