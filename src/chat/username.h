#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace chatd::chat {

/// Longest username accepted, in bytes (SPEC §3).
inline constexpr std::size_t kMaxUsernameBytes = 64;

/// Checks one username as it arrives from the path (already percent-decoded).
/// Returns nullopt when valid, else a human-readable reason: empty, longer than
/// 64 bytes, not UTF-8, or containing a control character.
std::optional<std::string> validate_username(std::string_view name);

}  // namespace chatd::chat
