#include "net/websocket/admission.h"

#include "auth/chat_identity.h"
#include "auth/token_verifier.h"
#include "chat/frames_v2.h"
#include "net/websocket/close_codes.h"
#include "util/header_list.h"

namespace chatd::net::websocket {

namespace http = boost::beast::http;

ProtocolVersion negotiate_protocol(std::string_view sec_websocket_protocol) {
  for (const auto entry : util::split_header_list(sec_websocket_protocol)) {
    if (entry == chat::v2::kSubprotocol) return ProtocolVersion::v2;
  }
  return ProtocolVersion::v1;
}

std::variant<Admitted, Refused> admit(const http::request<http::string_body>& request,
                                      const boost::asio::ip::address& remote,
                                      const auth::TokenVerifier* tokens, ConnectionLimits& limits) {
  auto parsed = parse_chat_path(request.target());
  if (auto* error = std::get_if<ChatPathError>(&parsed)) {
    return Refused{kBadPath, std::move(error->reason)};
  }
  Admitted admitted;
  admitted.path = std::move(std::get<ChatPath>(parsed));
  const ChatPath& path = admitted.path;

  std::optional<std::string> token;
  if (tokens != nullptr) {
    token = auth::extract_token(path.token, request[http::field::authorization],
                                request[http::field::sec_websocket_protocol]);
  }
  auto identity = auth::identify_in_chat(tokens, token, path.user1, path.user2);
  switch (identity.refusal) {
    case auth::ChatIdentity::Refusal::unauthorized:
      return Refused{kUnauthorized, std::move(identity.reason)};
    case auth::ChatIdentity::Refusal::forbidden:
      return Refused{kForbidden, std::move(identity.reason)};
    case auth::ChatIdentity::Refusal::none:
      break;
  }
  admitted.user = std::move(identity.user);
  admitted.token_expires_at = identity.expires_at;

  std::string reason;
  admitted.ticket = limits.admit(remote, reason);
  if (!admitted.ticket || !limits.admit_user(*admitted.ticket, admitted.user, reason)) {
    return Refused{kTooMany, std::move(reason)};
  }
  return admitted;
}

}  // namespace chatd::net::websocket
