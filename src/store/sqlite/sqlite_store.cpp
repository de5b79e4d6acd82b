#include "store/sqlite/sqlite_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <optional>

#include "util/post_result.h"

namespace chatd::store::sqlite {
namespace asio = boost::asio;

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS chats (
  id               INTEGER PRIMARY KEY,
  chat_key         TEXT NOT NULL UNIQUE,
  user_a           TEXT NOT NULL,
  user_b           TEXT NOT NULL,
  last_seq         INTEGER NOT NULL,
  last_activity_ms INTEGER NOT NULL
);
-- A user's chats are found by user and sorted by activity at read time: an
-- index on (user, last_activity_ms) would be rewritten by every commit (each
-- commit sets last_activity_ms of its chats): a quarter of the disk writes
-- at 10,000 msg/s, where commits hold a few messages each. Databases made
-- before this drop those indexes.
DROP INDEX IF EXISTS chats_by_user_a;
DROP INDEX IF EXISTS chats_by_user_b;
CREATE INDEX IF NOT EXISTS chats_of_user_a ON chats (user_a);
CREATE INDEX IF NOT EXISTS chats_of_user_b ON chats (user_b);
CREATE TABLE IF NOT EXISTS messages (
  chat_id   INTEGER NOT NULL,
  seq       INTEGER NOT NULL,
  id        TEXT NOT NULL,
  sender    TEXT NOT NULL,
  text      TEXT NOT NULL,
  ts_ms     INTEGER NOT NULL,
  client_id TEXT,
  PRIMARY KEY (chat_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id
  ON messages (chat_id, sender, client_id) WHERE client_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS reads (
  chat_key TEXT NOT NULL,
  user     TEXT NOT NULL,
  seq      INTEGER NOT NULL,
  PRIMARY KEY (chat_key, user)
) WITHOUT ROWID;
)sql";

constexpr std::string_view kMessageColumns = "seq, id, sender, text, ts_ms, client_id";

// Holds an exclusive lock on `<db>.lock` for the life of the store: the
// writer's sequence cache is only right while it is the file's only writer.
int lock_database_file(const std::string& db_path) {
  const std::string lock_path = db_path + ".lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw SqliteError("cannot create lock file '" + lock_path + "'");
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    throw SqliteError("SQLite database '" + db_path +
                      "' is in use by another chatd process (SQLITE_PATH must differ per instance;"
                      " use MONGO_URI to share one store between instances)");
  }
  return fd;
}

chat::MessagePtr read_message(sqlite3_stmt* row, const chat::ChatKey& chat) {
  auto message = std::make_shared<chat::Message>(chat);
  message->seq = static_cast<std::uint64_t>(sqlite3_column_int64(row, 0));
  message->id = column_text(row, 1);
  message->sender = column_text(row, 2);
  message->text = column_text(row, 3);
  message->timestamp_ms = sqlite3_column_int64(row, 4);
  message->client_id = column_text(row, 5);
  return message;
}

}  // namespace

struct SqliteStore::WriterStatements {
  Statement begin, commit, rollback, select_chat, insert_chat, update_chat, insert_message,
      find_by_client_id;

  explicit WriterStatements(sqlite3* db)
      : begin(prepare_or_throw(db, "BEGIN IMMEDIATE")),
        commit(prepare_or_throw(db, "COMMIT")),
        rollback(prepare_or_throw(db, "ROLLBACK")),
        select_chat(prepare_or_throw(db, "SELECT id, last_seq FROM chats WHERE chat_key = ?")),
        insert_chat(prepare_or_throw(db,
                                     "INSERT INTO chats (chat_key, user_a, user_b, last_seq, "
                                     "last_activity_ms) VALUES (?, ?, ?, 0, ?)")),
        update_chat(prepare_or_throw(
            db, "UPDATE chats SET last_seq = ?, last_activity_ms = ? WHERE id = ?")),
        insert_message(prepare_or_throw(db,
                                        "INSERT INTO messages (chat_id, seq, id, sender, text, "
                                        "ts_ms, client_id) VALUES (?, ?, ?, ?, ?, ?, ?)")),
        find_by_client_id(
            prepare_or_throw(db,
                             "SELECT seq, id, sender, text, ts_ms, client_id FROM messages"
                             " WHERE chat_id = ? AND sender = ? AND client_id = ?")) {}
};

struct SqliteStore::ReaderStatements {
  Statement newest, oldest, upsert_read, select_reads, select_chats, select_message, count_unread;

  explicit ReaderStatements(sqlite3* db)
      : newest(prepare_or_throw(
            db, "SELECT " + std::string(kMessageColumns) +
                    " FROM messages WHERE chat_id = (SELECT id FROM chats WHERE chat_key = ?)"
                    " AND seq > ? AND seq < ? ORDER BY seq DESC LIMIT ?")),
        oldest(prepare_or_throw(
            db, "SELECT " + std::string(kMessageColumns) +
                    " FROM messages WHERE chat_id = (SELECT id FROM chats WHERE chat_key = ?)"
                    " AND seq > ? AND seq < ? ORDER BY seq ASC LIMIT ?")),
        // A receipt only moves forward.
        upsert_read(prepare_or_throw(
            db, "INSERT INTO reads (chat_key, user, seq) VALUES (?1, ?2, ?3)"
                " ON CONFLICT (chat_key, user) DO UPDATE SET seq = max(seq, excluded.seq)")),
        select_reads(prepare_or_throw(db, "SELECT user, seq FROM reads WHERE chat_key = ?")),
        select_chats(prepare_or_throw(
            db, "SELECT id, chat_key, last_seq, (SELECT seq FROM reads"
                " WHERE reads.chat_key = chats.chat_key AND reads.user = ?1) FROM chats"
                " WHERE (user_a = ?1 OR user_b = ?1) AND last_seq > 0"
                " ORDER BY last_activity_ms DESC, id DESC LIMIT ?2")),
        select_message(prepare_or_throw(db, "SELECT " + std::string(kMessageColumns) +
                                                " FROM messages WHERE chat_id = ? AND seq = ?")),
        count_unread(prepare_or_throw(
            db, "SELECT count(*) FROM messages WHERE chat_id = ? AND seq > ? AND sender <> ?")) {}
};

SqliteStore::SqliteStore(SqliteOptions options, CommitListener listener, CommitObserver observer)
    : options_(std::move(options)),
      listener_(std::move(listener)),
      observer_(std::move(observer)),
      appends_(options_.max_queued) {
  const std::filesystem::path path(options_.path);
  if (path.has_parent_path()) {
    std::error_code error;
    std::filesystem::create_directories(path.parent_path(), error);
    if (error) {
      throw SqliteError("cannot create directory '" + path.parent_path().string() +
                        "' for SQLITE_PATH: " + error.message());
    }
  }
  lock_fd_ = lock_database_file(options_.path);
  try {
    writer_db_ = open_database(options_.path);
    exec_or_throw(writer_db_.get(), "PRAGMA journal_mode=WAL");
    exec_or_throw(writer_db_.get(), options_.sync == SyncMode::full ? "PRAGMA synchronous=FULL"
                                                                    : "PRAGMA synchronous=NORMAL");
    // A WAL that grew during a burst is cut back to this when it starts over.
    exec_or_throw(writer_db_.get(), "PRAGMA journal_size_limit=67108864");
    exec_or_throw(writer_db_.get(), kSchema);
    for (std::size_t i = 0; i < std::max<std::size_t>(1, options_.reader_threads); ++i) {
      reader_dbs_.push_back(open_database(options_.path));
    }
    checkpoint_db_ = open_database(options_.path);
    // Every connection that commits (the writer, and readers storing receipts)
    // hands checkpoints to the checkpoint thread instead of running them
    // inside its own commit, where the fsyncs would hold up every message.
    sqlite3_wal_hook(writer_db_.get(), &SqliteStore::on_wal_commit, this);
    for (auto& reader : reader_dbs_) {
      sqlite3_wal_hook(reader.get(), &SqliteStore::on_wal_commit, this);
    }
    sqlite3_wal_autocheckpoint(checkpoint_db_.get(), 0);
    // A connection learns that the file is in WAL mode when it first reads it;
    // until then a checkpoint through it does nothing.
    exec_or_throw(checkpoint_db_.get(), "PRAGMA journal_mode=WAL");
    // Statements are prepared here so a schema problem fails start-up.
    WriterStatements check_writer(writer_db_.get());
    ReaderStatements check_reader(reader_dbs_.front().get());
  } catch (...) {
    ::close(lock_fd_);
    throw;
  }
  writer_ = std::thread([this] { writer_loop(); });
  for (std::size_t i = 0; i < reader_dbs_.size(); ++i) {
    readers_.emplace_back([this, i] { reader_loop(i); });
  }
  checkpointer_ = std::thread([this] { checkpoint_loop(); });
}

SqliteStore::~SqliteStore() {
  drain();
  appends_.stop();
  writer_.join();
  reads_.stop();
  for (auto& reader : readers_) reader.join();
  {
    std::lock_guard lock(checkpoint_mutex_);
    stopping_ = true;
  }
  checkpoint_wanted_changed_.notify_one();
  checkpointer_.join();
  // Statements are finalized by their threads; the connections close here,
  // the writer's last: closing the last connection checkpoints the WAL.
  checkpoint_db_.reset();
  reader_dbs_.clear();
  writer_db_.reset();
  ::close(lock_fd_);
}

// ---------------------------------------------------------------------------
// Appends and group commit
// ---------------------------------------------------------------------------

void SqliteStore::append(chat::PendingMessage message, AppendHandler handler) {
  appends_.push(std::move(message), std::move(handler));
}

void SqliteStore::writer_loop() {
  WriterStatements statements(writer_db_.get());
  std::vector<Append> batch;
  batch.reserve(options_.max_batch);
  while (appends_.take(batch, options_.max_batch)) {
    commit(batch, statements);
    batch.clear();
    appends_.done();
  }
}

void SqliteStore::commit(std::vector<Append>& batch, WriterStatements& statements) {
  std::vector<AppendResult> results(batch.size());
  const auto started = std::chrono::steady_clock::now();
  const bool ok = write_batch(batch, statements, results);
  if (observer_) observer_(batch.size(), std::chrono::steady_clock::now() - started, ok);
  if (!ok) {
    // Nothing of the batch is stored; forget cached sequences, which may
    // have advanced inside the rolled-back transaction.
    chats_.clear();
    ready_.store(false, std::memory_order_relaxed);
    for (auto& result : results) result = AppendResult{StoreError::unavailable, nullptr, false};
  } else {
    ready_.store(true, std::memory_order_relaxed);
    std::vector<chat::MessagePtr> committed;
    committed.reserve(batch.size());
    for (const auto& result : results) {
      if (!result.duplicate) committed.push_back(result.message);
    }
    // Receivers hear of the messages before their senders do, in commit order.
    if (listener_ && !committed.empty()) listener_(committed);
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    util::post_result(std::move(batch[i].handler), std::move(results[i]));
  }
}

bool SqliteStore::write_batch(std::vector<Append>& batch, WriterStatements& statements,
                              std::vector<AppendResult>& results) {
  sqlite3* db = writer_db_.get();
  const auto step = [](const Statement& statement) {
    StatementReset reset(statement.get());
    return sqlite3_step(statement.get());
  };
  if (step(statements.begin) != SQLITE_DONE) {
    spdlog::error("sqlite: cannot begin a transaction: {}", sqlite3_errmsg(db));
    return false;
  }
  const std::int64_t timestamp = chat::now_ms();
  std::vector<ChatState*> touched;
  bool ok = true;
  for (std::size_t i = 0; ok && i < batch.size(); ++i) {
    const chat::PendingMessage& pending = batch[i].message;
    ChatState* state = chat_state(pending.chat, statements);
    if (state == nullptr) {
      ok = false;
      break;
    }
    if (!pending.client_id.empty()) {
      sqlite3_stmt* find = statements.find_by_client_id.get();
      StatementReset reset(find);
      sqlite3_bind_int64(find, 1, state->id);
      bind_text(find, 2, pending.sender);
      bind_text(find, 3, pending.client_id);
      if (sqlite3_step(find) == SQLITE_ROW) {
        auto original = std::const_pointer_cast<chat::Message>(read_message(find, pending.chat));
        original->origin = pending.origin;
        results[i] = AppendResult{StoreError::none, std::move(original), true};
        continue;
      }
    }
    auto message = std::make_shared<chat::Message>(pending.chat);
    message->seq = state->last_seq + 1;
    message->id = chat::make_message_id(timestamp);
    message->sender = pending.sender;
    message->text = pending.text;
    message->timestamp_ms = timestamp;
    message->client_id = pending.client_id;
    message->origin = pending.origin;
    message->received_at = pending.received_at;

    sqlite3_stmt* insert = statements.insert_message.get();
    StatementReset reset(insert);
    sqlite3_bind_int64(insert, 1, state->id);
    sqlite3_bind_int64(insert, 2, static_cast<sqlite3_int64>(message->seq));
    bind_text(insert, 3, message->id);
    bind_text(insert, 4, message->sender);
    bind_text(insert, 5, message->text);
    sqlite3_bind_int64(insert, 6, timestamp);
    if (message->client_id.empty()) {
      sqlite3_bind_null(insert, 7);
    } else {
      bind_text(insert, 7, message->client_id);
    }
    if (sqlite3_step(insert) != SQLITE_DONE) {
      spdlog::error("sqlite: cannot insert a message into chat {}: {}", pending.chat.str(),
                    sqlite3_errmsg(db));
      ok = false;
      break;
    }
    if (std::find(touched.begin(), touched.end(), state) == touched.end()) touched.push_back(state);
    state->last_seq = message->seq;
    results[i] = AppendResult{StoreError::none, std::move(message), false};
  }
  for (std::size_t i = 0; ok && i < touched.size(); ++i) {
    sqlite3_stmt* update = statements.update_chat.get();
    StatementReset reset(update);
    sqlite3_bind_int64(update, 1, static_cast<sqlite3_int64>(touched[i]->last_seq));
    sqlite3_bind_int64(update, 2, timestamp);
    sqlite3_bind_int64(update, 3, touched[i]->id);
    ok = sqlite3_step(update) == SQLITE_DONE;
    if (!ok) spdlog::error("sqlite: cannot update a chat: {}", sqlite3_errmsg(db));
  }
  if (ok && step(statements.commit) == SQLITE_DONE) return true;
  if (ok) spdlog::error("sqlite: commit failed: {}", sqlite3_errmsg(db));
  step(statements.rollback);
  return false;
}

SqliteStore::ChatState* SqliteStore::chat_state(const chat::ChatKey& chat,
                                                WriterStatements& statements) {
  if (const auto found = chats_.find(chat.str()); found != chats_.end()) return &found->second;
  ChatState state;
  {
    sqlite3_stmt* select = statements.select_chat.get();
    StatementReset reset(select);
    bind_text(select, 1, chat.str());
    const int rc = sqlite3_step(select);
    if (rc == SQLITE_ROW) {
      state.id = sqlite3_column_int64(select, 0);
      state.last_seq = static_cast<std::uint64_t>(sqlite3_column_int64(select, 1));
      return &chats_.emplace(chat.str(), state).first->second;
    }
    if (rc != SQLITE_DONE) {
      spdlog::error("sqlite: cannot read chat {}: {}", chat.str(),
                    sqlite3_errmsg(writer_db_.get()));
      return nullptr;
    }
  }
  sqlite3_stmt* insert = statements.insert_chat.get();
  StatementReset reset(insert);
  bind_text(insert, 1, chat.str());
  bind_text(insert, 2, chat.first());
  bind_text(insert, 3, chat.second());
  sqlite3_bind_int64(insert, 4, chat::now_ms());
  if (sqlite3_step(insert) != SQLITE_DONE) {
    spdlog::error("sqlite: cannot create chat {}: {}", chat.str(),
                  sqlite3_errmsg(writer_db_.get()));
    return nullptr;
  }
  state.id = sqlite3_last_insert_rowid(writer_db_.get());
  return &chats_.emplace(chat.str(), state).first->second;
}

// ---------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------

// Runs on the committing connection's thread, after its commit; `pages` is
// the WAL's length, which starts over from 0 after a complete checkpoint.
int SqliteStore::on_wal_commit(void* self, sqlite3* /*db*/, const char* /*name*/, int pages) {
  auto* store = static_cast<SqliteStore*>(self);
  {
    std::lock_guard lock(store->checkpoint_mutex_);
    if (pages < store->wal_pages_checkpointed_) store->wal_pages_checkpointed_ = 0;
    if (store->checkpoint_wanted_ ||
        pages - store->wal_pages_checkpointed_ < store->options_.checkpoint_pages) {
      return SQLITE_OK;
    }
    store->checkpoint_wanted_ = true;
  }
  store->checkpoint_wanted_changed_.notify_one();
  return SQLITE_OK;
}

// A PASSIVE checkpoint copies what no reader still needs and never blocks the
// writer, which goes on appending meanwhile. The WAL starts over once a
// checkpoint has copied all of it, which under sustained load never happens
// by itself: past `wal_limit_pages` a RESTART checkpoint holds the writer
// for the rest (the passive ones copied most) and makes it start over.
void SqliteStore::checkpoint_loop() {
  std::unique_lock lock(checkpoint_mutex_);
  while (true) {
    checkpoint_wanted_changed_.wait(lock, [this] { return checkpoint_wanted_ || stopping_; });
    if (stopping_) return;
    lock.unlock();
    sqlite3* db = checkpoint_db_.get();
    int wal_pages = 0;
    int copied_pages = 0;
    int rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_pages,
                                       &copied_pages);
    if (rc == SQLITE_OK && wal_pages > options_.wal_limit_pages) {
      rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_RESTART, &wal_pages,
                                     &copied_pages);
      if (rc == SQLITE_OK) wal_pages = 0;
    }
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      spdlog::warn("sqlite: checkpoint failed ({} of {} WAL pages copied): {}", copied_pages,
                   wal_pages, sqlite3_errmsg(db));
    }
    lock.lock();
    checkpoint_wanted_ = false;
    wal_pages_checkpointed_ = std::max(0, wal_pages);
  }
}

void SqliteStore::drain() {
  appends_.drain();
}

// ---------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------

void SqliteStore::history(chat::ChatKey chat, HistoryQuery query, HistoryHandler handler) {
  reads_.push(Read{std::move(chat), query, std::move(handler)});
}

void SqliteStore::mark_read(chat::ChatKey chat, std::string user, std::uint64_t seq,
                            ReadMarksHandler handler) {
  reads_.push(MarkRead{std::move(chat), std::move(user), seq, std::move(handler)});
}

void SqliteStore::read_marks(chat::ChatKey chat, ReadMarksHandler handler) {
  reads_.push(MarkRead{std::move(chat), {}, 0, std::move(handler)});
}

void SqliteStore::conversations(std::string user, std::size_t limit,
                                ConversationsHandler handler) {
  reads_.push(ListConversations{std::move(user), limit, std::move(handler)});
}

void SqliteStore::reader_loop(std::size_t index) {
  ReaderStatements statements(reader_dbs_[index].get());
  while (std::optional<ReadJob> job = reads_.pop()) {
    if (auto* read = std::get_if<Read>(&*job)) {
      util::post_result(std::move(read->handler), read_page(*read, statements));
    } else if (auto* mark = std::get_if<MarkRead>(&*job)) {
      util::post_result(std::move(mark->handler), write_read_mark(*mark, statements));
    } else {
      auto& list = std::get<ListConversations>(*job);
      util::post_result(std::move(list.handler), list_conversations(list, statements));
    }
  }
}

// A receipt is one autocommitted row, written from a reader connection: the
// group-commit writer waits at most that long for it (busy timeout).
ReadMarks SqliteStore::write_read_mark(const MarkRead& mark, ReaderStatements& statements) {
  sqlite3* db = sqlite3_db_handle(statements.select_reads.get());
  if (mark.seq != 0) {
    sqlite3_stmt* upsert = statements.upsert_read.get();
    StatementReset reset(upsert);
    bind_text(upsert, 1, mark.chat.str());
    bind_text(upsert, 2, mark.user);
    sqlite3_bind_int64(upsert, 3, static_cast<sqlite3_int64>(mark.seq));
    if (sqlite3_step(upsert) != SQLITE_DONE) {
      spdlog::error("sqlite: cannot store a read receipt in chat {}: {}", mark.chat.str(),
                    sqlite3_errmsg(db));
      return ReadMarks{StoreError::unavailable};
    }
  }
  ReadMarks marks;
  sqlite3_stmt* select = statements.select_reads.get();
  StatementReset reset(select);
  bind_text(select, 1, mark.chat.str());
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
    const auto seq = static_cast<std::uint64_t>(sqlite3_column_int64(select, 1));
    (column_text(select, 0) == mark.chat.first() ? marks.first : marks.second) = seq;
  }
  if (rc != SQLITE_DONE) {
    spdlog::error("sqlite: cannot read the receipts of chat {}: {}", mark.chat.str(),
                  sqlite3_errmsg(db));
    return ReadMarks{StoreError::unavailable};
  }
  return marks;
}

ConversationList SqliteStore::list_conversations(const ListConversations& list,
                                                 ReaderStatements& statements) {
  sqlite3* db = sqlite3_db_handle(statements.select_chats.get());
  const auto failed = [&] {
    spdlog::error("sqlite: cannot list the conversations of {}: {}", list.user,
                  sqlite3_errmsg(db));
    return ConversationList{StoreError::unavailable, {}};
  };
  struct Row {
    sqlite3_int64 id;
    chat::ChatKey chat;
    std::uint64_t last_seq;
    std::uint64_t read_seq;
  };
  std::vector<Row> rows;
  {
    sqlite3_stmt* select = statements.select_chats.get();
    StatementReset reset(select);
    bind_text(select, 1, list.user);
    sqlite3_bind_int64(select, 2, static_cast<sqlite3_int64>(list.limit));
    int rc = SQLITE_ROW;
    while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
      auto chat = chat::ChatKey::parse(column_text(select, 1));
      if (!chat) continue;
      rows.push_back(Row{sqlite3_column_int64(select, 0), std::move(*chat),
                         static_cast<std::uint64_t>(sqlite3_column_int64(select, 2)),
                         static_cast<std::uint64_t>(sqlite3_column_int64(select, 3))});
    }
    if (rc != SQLITE_DONE) return failed();
  }
  ConversationList result;
  for (auto& row : rows) {
    Conversation conversation{row.chat, nullptr, row.read_seq, 0};
    {
      sqlite3_stmt* select = statements.select_message.get();
      StatementReset reset(select);
      sqlite3_bind_int64(select, 1, row.id);
      sqlite3_bind_int64(select, 2, static_cast<sqlite3_int64>(row.last_seq));
      const int rc = sqlite3_step(select);
      if (rc != SQLITE_ROW) return failed();
      conversation.last = read_message(select, row.chat);
    }
    {
      sqlite3_stmt* count = statements.count_unread.get();
      StatementReset reset(count);
      sqlite3_bind_int64(count, 1, row.id);
      sqlite3_bind_int64(count, 2, static_cast<sqlite3_int64>(row.read_seq));
      bind_text(count, 3, list.user);
      if (sqlite3_step(count) != SQLITE_ROW) return failed();
      conversation.unread = static_cast<std::uint64_t>(sqlite3_column_int64(count, 0));
    }
    result.conversations.push_back(std::move(conversation));
  }
  return result;
}

HistoryPage SqliteStore::read_page(const Read& read, ReaderStatements& statements) {
  const HistoryQuery& query = read.query;
  sqlite3_stmt* select = query.oldest_first ? statements.oldest.get() : statements.newest.get();
  StatementReset reset(select);
  const std::uint64_t before =
      query.before_seq == 0 ? std::numeric_limits<std::int64_t>::max() : query.before_seq;
  bind_text(select, 1, read.chat.str());
  sqlite3_bind_int64(select, 2, static_cast<sqlite3_int64>(query.after_seq));
  sqlite3_bind_int64(select, 3, static_cast<sqlite3_int64>(before));
  // One row more than asked tells whether there is more.
  sqlite3_bind_int64(select, 4, static_cast<sqlite3_int64>(query.limit) + 1);
  HistoryPage page;
  PageFill fill(query, page);
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(select)) == SQLITE_ROW) {
    if (!fill.add(read_message(select, read.chat))) break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    spdlog::error("sqlite: cannot read history of chat {}: {}", read.chat.str(),
                  sqlite3_errstr(rc));
    return HistoryPage{StoreError::unavailable, {}, false};
  }
  if (!query.oldest_first) std::reverse(page.messages.begin(), page.messages.end());
  return page;
}

}  // namespace chatd::store::sqlite
