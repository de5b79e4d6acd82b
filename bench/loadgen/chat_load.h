#pragma once

#include "loadgen/connection.h"
#include "loadgen/options.h"
#include "loadgen/report.h"

namespace chatd::loadgen {

/// The messaging run: opens `--chats` chats of two connections, checks that
/// every connection is live, sends for `--warmup` + `--duration` seconds
/// (fixed rate, or as fast as the `--inflight` window allows), drains, and
/// adds throughput, latency, errors and order checks to `report`.
/// Returns the exit code: 0 when every connection held and nothing arrived
/// out of order or vanished without an error frame, else 1.
int run_chat_load(const Options& options, const Target& target, Report& report);

}  // namespace chatd::loadgen
