#pragma once

#include "store/backend.h"
#include "store/mongo/mongo_handles.h"

namespace chatd::store::mongo {

class MongoBackend;

/// History, receipts, conversation lists and blocks, on one reader thread with a
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
  BlockList blocks(const std::string& user) override;

 private:
  HistoryPage read_page(const chat::ChatKey& chat, const HistoryQuery& query);
  ReadMarks write_read_mark(const chat::ChatKey& chat, const std::string& user, std::uint64_t seq);
  /// Both users' receipts of `chat` into `marks`; false when the read failed.
  bool read_receipts(const chat::ChatKey& chat, ReadMarks& marks);
  /// Who blocks whom and the oldest and newest seqs into `marks`; false on failure.
  bool read_chat_state(const chat::ChatKey& chat, ReadMarks& marks);
  static bool store_receipt(const Collection& reads, const chat::ChatKey& chat,
                            const std::string& user, std::uint64_t seq, bson_error_t& error);
  static bool store_receipt_with_hook(const Collection& reads, const chat::ChatKey& chat,
                                      const std::string& user, std::uint64_t seq,
                                      bson_error_t& error);
  ConversationList list_conversations(const std::string& user, std::size_t limit);
  BlockList list_blocks(const std::string& user);
  /// Logs a failed read and tells the backend when the server is gone.
  void failed(const char* what, const std::string& of, const bson_error_t& error);

  MongoBackend& backend_;
  PooledClient client_;
};

}  // namespace chatd::store::mongo
