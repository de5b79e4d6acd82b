#include "metrics/chatd_metrics.h"

#include <string>

namespace chatd::metrics {
namespace {

constexpr const char* kRejected = "chatd_sends_rejected_total";
constexpr const char* kRejectedHelp = "Messages refused with an error frame, by error code.";
constexpr const char* kClosed = "chatd_closes_total";
constexpr const char* kClosedHelp = "WebSocket sessions closed, by close code.";

}  // namespace

ChatdMetrics::ChatdMetrics(Registry& r)
    : registry(r),
      messages_received(r.counter("chatd_messages_received_total",
                                  "Message frames read and accepted for storage.")),
      messages_committed(
          r.counter("chatd_messages_committed_total", "Messages committed by the store.")),
      messages_delivered(r.counter("chatd_messages_delivered_total",
                                   "Message frames written to receiving connections.")),
      sessions_opened(r.counter("chatd_sessions_opened_total",
                                "WebSocket sessions that passed user verification.")),
      slow_reader_closes(r.counter("chatd_slow_reader_closes_total",
                                   "Connections closed with 1008 because they read too slowly.")),
      send_queue_bytes(r.gauge("chatd_send_queue_bytes",
                               "Bytes of frames queued to every WebSocket connection (history, "
                               "live messages, replies, events), not yet written.")),
      events_dropped(r.counter("chatd_events_dropped_total",
                               "v2 events (typing, presence, receipts) not sent to a connection "
                               "because its send queue was full.")),
      commit_seconds(r.histogram("chatd_store_commit_seconds", "Duration of one store commit.",
                                 exponential_buckets(0.0001, 2, 16))),
      batch_size(r.histogram("chatd_store_batch_size", "Messages per store commit.",
                             exponential_buckets(1, 2, 12))),
      delivery_seconds(r.histogram("chatd_delivery_seconds",
                                   "Server-side latency from reading a frame to writing it to a "
                                   "receiver.",
                                   exponential_buckets(0.0001, 2, 16))),
      user_lookup_seconds(r.histogram("chatd_user_lookup_seconds",
                                      "Duration of one request to the user-search service.",
                                      exponential_buckets(0.0005, 2, 14))),
      retention_purged(r.counter("chatd_retention_purged_messages_total",
                                 "Messages and changes removed as older than RETENTION_DAYS.")),
      admin_erasures(r.counter("chatd_admin_actions_total", "Admin API actions, by action.",
                               {{"action", "erase"}})),
      admin_exports(r.counter("chatd_admin_actions_total", "Admin API actions, by action.",
                              {{"action", "export"}})),
      erased_messages(r.counter("chatd_erased_messages_total",
                                "Messages and edits whose text an admin erasure removed.")),
      exported_messages(
          r.counter("chatd_exported_messages_total", "Messages sent in admin API exports.")),
      rejected_other_(r.counter(kRejected, kRejectedHelp, {{"code", "other"}})),
      closed_other_(r.counter(kClosed, kClosedHelp, {{"code", "other"}})) {
  for (std::size_t i = 0; i < kRejectCodes.size(); ++i) {
    rejected_by_code_[i] = &r.counter(kRejected, kRejectedHelp, {{"code", kRejectCodes[i]}});
  }
  for (std::size_t i = 0; i < kCloseCodes.size(); ++i) {
    closed_by_code_[i] =
        &r.counter(kClosed, kClosedHelp, {{"code", std::to_string(kCloseCodes[i])}});
  }
  r.gauge("chatd_build_info", "chatd's version.", {{"version", CHATD_VERSION}}).set(1);
}

void ChatdMetrics::rejected(std::string_view code) {
  for (std::size_t i = 0; i < kRejectCodes.size(); ++i) {
    if (code == kRejectCodes[i]) return rejected_by_code_[i]->inc();
  }
  rejected_other_.inc();
}

void ChatdMetrics::closed(unsigned code) {
  for (std::size_t i = 0; i < kCloseCodes.size(); ++i) {
    if (code == kCloseCodes[i]) return closed_by_code_[i]->inc();
  }
  closed_other_.inc();
}

}  // namespace chatd::metrics
