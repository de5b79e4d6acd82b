#pragma once

#include "loadgen/connection.h"
#include "loadgen/options.h"
#include "loadgen/report.h"

namespace chatd::loadgen {

/// Idle connections: what an open connection costs chatd in memory. Opens
/// `--idle` connections, two per chat (`/ws/<p>i<k>/<p>j<k>` and back), in
/// `--steps` equal steps of at most `--concurrency` being opened at once. A
/// connection is ready when chatd is past its (empty) history: with v1 when
/// it answers a WebSocket ping (chatd reads, and so answers pings, only once
/// the history is queued), with v2 at the `history` frame; with centrifugo
/// (Centrifugo instead of chatd) at the reply to its subscribe, after the
/// connect's (centrifugo.h); its pings are answered. After each step
/// and after `--hold` seconds idle, chatd's VmRSS and RssAnon are sampled
/// (/proc/<pid>/status) following `--settle` quiet seconds. Sends no message.
/// Returns 0 when every connection became ready and none closed, else 1; 2
/// when chatd's process cannot be found or this process lacks descriptors.
int run_idle(const Options& options, const Target& target, Report& report);

}  // namespace chatd::loadgen
