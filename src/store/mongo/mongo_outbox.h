#pragma once

#include "store/mongo/mongo_handles.h"
#include "store/outbox.h"

namespace chatd::store::mongo {

class MongoBackend;

/// The webhook outbox on MongoDB (bson_mapping.h): messages whose `hooks`
/// array names events still to send, the webhook_failed collection, and the
/// webhook_lease document that lets one instance of several send.
class MongoOutbox final : public Outbox {
 public:
  explicit MongoOutbox(MongoBackend& backend);

  std::optional<std::vector<chat::MessagePtr>> pending(std::size_t chats, std::size_t per_chat,
                                                       const ReadFrom& after) override;
  std::optional<std::vector<PendingRead>> pending_reads(std::size_t limit) override;
  bool settle(std::span<const SettledHook> delivered, std::span<const FailedEvent> failed) override;
  std::optional<std::vector<FailedEvent>> failed(std::size_t limit) override;
  std::optional<bool> retry(const std::string& event_id) override;
  std::optional<Backlog> backlog() override;
  bool hold_lease(const std::string& instance, std::chrono::milliseconds ttl) override;

 private:
  Collection collection(const char* name) const;
  /// Logs a failed operation and tells the backend when the server is gone.
  void failed_to(const char* what, const bson_error_t& error);

  MongoBackend& backend_;
  PooledClient client_;
  std::string after_chat_;       ///< Where the last pending() stopped.
  std::string after_read_chat_;  ///< Where the last pending_reads() stopped.
};

}  // namespace chatd::store::mongo
