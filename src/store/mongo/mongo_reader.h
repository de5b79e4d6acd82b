#pragma once

#include "store/backend.h"
#include "store/mongo/mongo_handles.h"

namespace chatd::store::mongo {

class MongoBackend;

/// History, receipts and conversation lists, on one reader thread with a
/// client of its own from the pool. Fails at once while the backend is not
/// ready, and tells it when an operation finds the server gone.
class MongoReader final : public Reader {
 public:
  explicit MongoReader(MongoBackend& backend);

  // Reader
  HistoryPage history(const chat::ChatKey& chat, const HistoryQuery& query) override;
  ReadMarks mark_read(const chat::ChatKey& chat, const std::string& user,
                      std::uint64_t seq) override;
  ConversationList conversations(const std::string& user, std::size_t limit) override;

 private:
  HistoryPage read_page(const chat::ChatKey& chat, const HistoryQuery& query);
  ReadMarks write_read_mark(const chat::ChatKey& chat, const std::string& user, std::uint64_t seq);
  static bool store_receipt(const Collection& reads, const chat::ChatKey& chat,
                            const std::string& user, std::uint64_t seq, bson_error_t& error);
  static bool store_receipt_with_hook(const Collection& reads, const chat::ChatKey& chat,
                                      const std::string& user, std::uint64_t seq,
                                      bson_error_t& error);
  ConversationList list_conversations(const std::string& user, std::size_t limit);

  MongoBackend& backend_;
  PooledClient client_;
};

}  // namespace chatd::store::mongo
