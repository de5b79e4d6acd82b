#pragma once

#include <cstdint>

namespace chatd::net::websocket {

// chatd's close codes (SPEC §3; README "Close codes"). The standard ones
// chatd uses are 1001 (shutdown), 1008 (receiver too slow), 1009 (frame too
// big) and 1013 (user-search service or store unavailable).
inline constexpr std::uint16_t kGoingAway = 1001;
inline constexpr std::uint16_t kTooSlow = 1008;
inline constexpr std::uint16_t kTryAgainLater = 1013;
inline constexpr std::uint16_t kBadPath = 4400;
inline constexpr std::uint16_t kUnauthorized = 4401;
inline constexpr std::uint16_t kForbidden = 4403;
inline constexpr std::uint16_t kUnknownUser = 4404;
inline constexpr std::uint16_t kTooMany = 4429;

}  // namespace chatd::net::websocket
