#pragma once

#include <array>
#include <string_view>

#include "metrics/registry.h"

namespace chatd::metrics {

/// Every metric chatd exports, registered once at start-up. Parts of chatd get
/// a reference to this and update the fields; /metrics renders the registry.
/// docs/operations.md explains each metric.
class ChatdMetrics {
 public:
  explicit ChatdMetrics(Registry& registry);

  Registry& registry;

  Counter& messages_received;      ///< Frames accepted for storage.
  Counter& messages_committed;     ///< Messages the store committed.
  Counter& messages_delivered;     ///< Message frames written to receivers.
  Counter& sessions_opened;        ///< WebSocket sessions that passed verification.
  Counter& slow_reader_closes;     ///< Receivers closed with 1008.
  Gauge& send_queue_bytes;         ///< Frames queued to every connection, in bytes.
  Counter& events_dropped;         ///< v2 events not queued: the receiver's queue was full.
  Histogram& commit_seconds;       ///< Duration of one store commit (batch).
  Histogram& batch_size;           ///< Messages per commit.
  Histogram& delivery_seconds;     ///< From frame read to the peer's write completing.
  Histogram& user_lookup_seconds;  ///< One request to the user-search service.
  Counter& retention_purged;       ///< Entries removed by RETENTION_DAYS.
  Counter& admin_erasures;         ///< Admin API erasures of a user.
  Counter& admin_exports;          ///< Admin API export pages of a user.
  Counter& erased_messages;        ///< Messages and edits made tombstones by erasures.
  Counter& exported_messages;      ///< Messages sent in exports.

  /// Rejected sends, by error code (invalid_json, sender_not_participant, ...).
  void rejected(std::string_view code);
  /// Closes, by WebSocket close code.
  void closed(unsigned code);

 private:
  // The codes a client can cause; anything else is counted as "other", so a
  // label's values stay a small fixed set.
  // v1's and v2's (chat/frames.cpp, chat/frames_v2.cpp) and the session's.
  static constexpr std::array<const char*, 25> kRejectCodes{"rate_limited",
                                                            "invalid_json",
                                                            "invalid_frame",
                                                            "invalid_sender",
                                                            "invalid_text",
                                                            "empty_text",
                                                            "text_too_long",
                                                            "sender_not_participant",
                                                            "unsupported_frame",
                                                            "store_unavailable",
                                                            "overloaded",
                                                            "shutting_down",
                                                            "invalid_client_id",
                                                            "invalid_history",
                                                            "invalid_read",
                                                            "invalid_type",
                                                            "invalid_typing",
                                                            "unknown_type",
                                                            "sender_not_authenticated",
                                                            "invalid_target",
                                                            "blocked",
                                                            "message_not_found",
                                                            "not_your_message",
                                                            "message_deleted",
                                                            "edit_window_passed"};
  static constexpr std::array<unsigned, 12> kCloseCodes{1000, 1001, 1006, 1008, 1009, 1011,
                                                        1013, 4400, 4401, 4403, 4404, 4429};

  Counter& rejected_other_;
  Counter& closed_other_;
  std::array<Counter*, kRejectCodes.size()> rejected_by_code_{};
  std::array<Counter*, kCloseCodes.size()> closed_by_code_{};
};

}  // namespace chatd::metrics
