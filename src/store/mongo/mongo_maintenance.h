#pragma once

#include "store/maintenance.h"
#include "store/mongo/mongo_handles.h"

namespace chatd::store::mongo {

class MongoBackend;

/// Retention, erasure and export on MongoDB (bson_mapping.h), on the
/// maintenance thread with a client of its own from the pool. Every call is
/// a bounded number of documents: it finds their _ids with a limit, then
/// updates or deletes {_id: {$in: ...}}, so it holds no lock for long and
/// the writer's commits go on in between.
class MongoMaintenance final : public Maintenance {
 public:
  explicit MongoMaintenance(MongoBackend& backend);

  // Maintenance
  PurgeStep purge(std::int64_t before_ms, std::size_t max_rows) override;
  std::vector<chat::ChatKey> chats_of(const std::string& user, const std::string& after,
                                      std::size_t limit) override;
  std::vector<chat::MessagePtr> messages(const chat::ChatKey& chat, std::uint64_t after_seq,
                                         std::size_t limit) override;
  EraseStep erase(const chat::ChatKey& chat, const std::string& user,
                  std::size_t max_rows) override;
  std::size_t forget_user(const std::string& user) override;

 private:
  Collection collection(const char* name) const;
  /// Throws MaintenanceError while the backend knows the server is away.
  void check_ready() const;
  /// Finds at most `limit` documents of `filter` (in `sort` order, when
  /// given) and writes {_id: {$in: [their _ids]}} to `selector`; returns how many.
  std::size_t select_ids(const Collection& collection, const bson_t* filter, const bson_t* sort,
                         std::size_t limit, bson_t* selector, const char* what);
  /// Applies `update` to at most `limit` documents of `filter`; returns how many changed.
  std::size_t update_some(const Collection& collection, const bson_t* filter, const bson_t* update,
                          std::size_t limit, const char* what);
  /// Tells the backend when the server is gone, and throws MaintenanceError.
  [[noreturn]] void fail(const char* what, const bson_error_t& error);

  MongoBackend& backend_;
  PooledClient client_;
};

}  // namespace chatd::store::mongo
