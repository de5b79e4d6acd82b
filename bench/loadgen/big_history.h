#pragma once

#include "loadgen/connection.h"
#include "loadgen/options.h"
#include "loadgen/report.h"

namespace chatd::loadgen {

/// Big history: what connecting to a long chat costs. Fills one chat
/// (`<p>h0a` with `<p>h0b`) with `--big-history` messages over one v2
/// connection (`send` frames, at most `--inflight` unacknowledged), then, one
/// connection at a time:
///   1. `--connects` v2 connects: TCP connect -> the `history` frame (the newest
///      HISTORY_LIMIT messages in one frame);
///   2. `--connects` v1 connects: TCP connect -> the frame of the chat's last
///      message (v1 sends HISTORY_LIMIT frames, oldest first);
///   3. `--page-runs` times, a v2 connection pages through the whole chat with
///      `{"type":"history","before":<oldest seen>,"limit":--page-size}`
///      until `has_more` is false: connect -> every message received.
/// Every history received is checked: consecutive seqs ending at the chat's
/// last, and each paging run holds every message once. Connects alternate
/// between the two users. Returns 0 when every step completed and every check
/// held, else 1.
int run_big_history(const Options& options, const Target& target, Report& report);

}  // namespace chatd::loadgen
