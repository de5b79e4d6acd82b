#pragma once

#include "loadgen/connection.h"
#include "loadgen/options.h"
#include "loadgen/report.h"

namespace chatd::loadgen {

/// The connection storm: opens `--storm` fresh connections, two per chat, at
/// most `--concurrency` being opened at once, as fast as chatd takes them. A
/// session counts when its WebSocket handshake completes; a chat counts as
/// verified when a message sent on its first connection reaches the second
/// (proof that chatd verified both users and joined both sessions).
/// Adds sessions/s and handshake times to `report`. Returns 0 when every
/// connection opened and every chat verified, else 1.
int run_storm(const Options& options, const Target& target, Report& report);

}  // namespace chatd::loadgen
