#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "users/user_directory.h"

namespace chatd::users {

/// Returns the text of the `username` element inside the SOAP Body of `xml`, whatever its
/// namespace prefix: entities and CDATA decoded, surrounding whitespace trimmed. nullopt when
/// `xml` is not well-formed, is not a SOAP envelope, carries a SOAP Fault or names no user.
std::optional<std::string> parse_username(std::string_view xml);

/// Classifies one HTTP answer of the user-search service to `?username=asked_username`
/// (SPEC §1). Pure: no I/O, no logging.
UserStatus classify_answer(unsigned http_status, std::string_view body,
                           std::string_view asked_username);

}  // namespace chatd::users
