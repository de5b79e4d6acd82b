#include "users/soap_envelope.h"

#include <pugixml.hpp>

namespace chatd::users {
namespace {

/// The real service's "unknown user" answer is a 500 carrying Go's sql.ErrNoRows text, e.g.
/// "Database query error: sql: no rows in result set".
constexpr std::string_view kNoRowsMarker = "no rows in result set";
/// Older deployments answered 200 with this text for an unknown user.
constexpr std::string_view kLegacyNotFound = "Usuario no encontrado";

/// Element name without its namespace prefix: "soapenv:Body" -> "Body".
std::string_view local_name(const pugi::xml_node& node) {
  std::string_view name = node.name();
  const auto colon = name.rfind(':');
  return colon == std::string_view::npos ? name : name.substr(colon + 1);
}

pugi::xml_node child_by_local_name(const pugi::xml_node& parent, std::string_view name) {
  for (const pugi::xml_node& child : parent.children()) {
    if (child.type() == pugi::node_element && local_name(child) == name) return child;
  }
  return {};
}

/// Depth-first: the service wraps `username` in a response element
/// (`getUserByUsernameResponse`) whose name we do not want to depend on.
pugi::xml_node descendant_by_local_name(const pugi::xml_node& parent, std::string_view name) {
  for (const pugi::xml_node& child : parent.children()) {
    if (child.type() != pugi::node_element) continue;
    if (local_name(child) == name) return child;
    if (pugi::xml_node found = descendant_by_local_name(child, name)) return found;
  }
  return {};
}

std::string_view trim(std::string_view text) {
  constexpr std::string_view kWhitespace = " \t\r\n";
  const auto first = text.find_first_not_of(kWhitespace);
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(kWhitespace);
  return text.substr(first, last - first + 1);
}

}  // namespace

std::optional<std::string> parse_username(std::string_view xml) {
  pugi::xml_document document;
  // parse_default decodes the predefined and numeric entities and keeps CDATA; pugixml never
  // reads DTDs or expands custom entities, so a hostile body cannot make it fetch files or
  // blow up memory (XXE, "billion laughs").
  const pugi::xml_parse_result parsed =
      document.load_buffer(xml.data(), xml.size(), pugi::parse_default, pugi::encoding_utf8);
  if (!parsed) return std::nullopt;

  const pugi::xml_node envelope = document.document_element();
  if (local_name(envelope) != "Envelope") return std::nullopt;
  const pugi::xml_node body = child_by_local_name(envelope, "Body");
  if (!body || child_by_local_name(body, "Fault")) return std::nullopt;
  const pugi::xml_node username = descendant_by_local_name(body, "username");
  if (!username) return std::nullopt;

  // Concatenate every text and CDATA child: "a&amp;<![CDATA[b]]>" is one name, "a&b".
  std::string text;
  for (const pugi::xml_node& child : username.children()) {
    if (child.type() == pugi::node_pcdata || child.type() == pugi::node_cdata) {
      text += child.value();
    }
  }
  return std::string(trim(text));
}

UserStatus classify_answer(unsigned http_status, std::string_view body,
                           std::string_view asked_username) {
  if (http_status == 200) {
    if (const auto username = parse_username(body)) {
      // The service answers for one name; an envelope about someone else means the name we
      // asked for has no record (e.g. a case-insensitive match on their side).
      return *username == asked_username ? UserStatus::found : UserStatus::not_found;
    }
    if (body.find(kLegacyNotFound) != std::string_view::npos) return UserStatus::not_found;
    return UserStatus::unavailable;  // empty, malformed, a SOAP Fault, an HTML error page...
  }
  if (http_status == 500 && body.find(kNoRowsMarker) != std::string_view::npos) {
    return UserStatus::not_found;
  }
  // Any other 500 is `unavailable`, not `not_found`: the service also answers 500 when its
  // own database is down or times out, and such an outage must not tell a real user that
  // they do not exist (their chat would be refused with close 4404 instead of a retryable
  // 1013). Only the explicit "no rows" answer proves the name is unknown.
  // A 400 means the service did not see our `username` parameter, i.e. USER_SEARCH_URL
  // points at the wrong thing; 404 and the rest are likewise about the service, not the user.
  return UserStatus::unavailable;
}

}  // namespace chatd::users
