#include "store/mongo/mongo_connection.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

#include "store/mongo/bson_mapping.h"

namespace chatd::store::mongo {
namespace {

// The driver's own lines (e.g. "Could not resolve host") go through the one
// logging library. Its "message"/"info" chatter is debug-level to chatd.
void log_to_spdlog(mongoc_log_level_t level, const char* domain, const char* message, void*) {
  spdlog::level::level_enum mapped = spdlog::level::debug;
  switch (level) {
    case MONGOC_LOG_LEVEL_ERROR:
    case MONGOC_LOG_LEVEL_CRITICAL:
      mapped = spdlog::level::err;
      break;
    case MONGOC_LOG_LEVEL_WARNING:
      mapped = spdlog::level::warn;
      break;
    case MONGOC_LOG_LEVEL_TRACE:
      mapped = spdlog::level::trace;
      break;
    default:
      break;
  }
  // FerretDB has no sessions; the pool's goodbye to them is noise, not news.
  if (std::string_view(message).find("endSessions") != std::string_view::npos) {
    mapped = spdlog::level::debug;
  }
  spdlog::log(mapped, "mongoc[{}]: {}", domain, message);
}

// The total the current thread's CommandCounter adds to (nullptr: none).
thread_local std::atomic<std::uint64_t>* counted_commands = nullptr;

// Called on the thread that sends the command.
void count_command(const mongoc_apm_command_started_t* /*event*/) {
  if (counted_commands != nullptr) counted_commands->fetch_add(1, std::memory_order_relaxed);
}

struct Driver {
  Driver() {
    mongoc_log_set_handler(log_to_spdlog, nullptr);
    mongoc_init();
  }
  ~Driver() { mongoc_cleanup(); }
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;
};

void default_int32(mongoc_uri_t* uri, const char* option, std::int32_t value) {
  if (!mongoc_uri_has_option(uri, option)) mongoc_uri_set_option_as_int32(uri, option, value);
}

std::string describe_write_concern(const mongoc_write_concern_t* concern) {
  std::string w;
  switch (const std::int32_t value = mongoc_write_concern_get_w(concern)) {
    case MONGOC_WRITE_CONCERN_W_MAJORITY:
      w = "majority";
      break;
    case MONGOC_WRITE_CONCERN_W_TAG:
      w = mongoc_write_concern_get_wtag(concern);
      break;
    case MONGOC_WRITE_CONCERN_W_DEFAULT:
      w = "server default";
      break;
    default:
      w = std::to_string(value);
  }
  const char* j = !mongoc_write_concern_journal_is_set(concern) ? "server default"
                  : mongoc_write_concern_get_journal(concern)   ? "true"
                                                                : "false";
  return "w=" + w + ", j=" + j;
}

// Runs {createIndexes: collection, indexes: [index]}.
bool create_index(mongoc_database_t* db, const char* collection, const bson_t* index,
                  bson_error_t& error) {
  Bson command, reply;
  bson_append_utf8(command.get(), "createIndexes", -1, collection, -1);
  bson_t indexes;
  bson_append_array_begin(command.get(), "indexes", -1, &indexes);
  bson_append_document(&indexes, "0", -1, index);
  bson_append_array_end(command.get(), &indexes);
  return mongoc_database_write_command_with_opts(db, command.get(), nullptr, reply.get(), &error);
}

void append_key(bson_t* index, std::initializer_list<std::pair<const char*, int>> fields) {
  bson_t key;
  bson_append_document_begin(index, "key", -1, &key);
  for (const auto& [name, direction] : fields) bson_append_int32(&key, name, -1, direction);
  bson_append_document_end(index, &key);
}

}  // namespace

void ensure_driver_initialized() {
  static const Driver driver;
}

std::string Bson::json() const {
  std::size_t length = 0;
  char* text = bson_as_relaxed_extended_json(&value_, &length);
  std::string out = text ? std::string(text, length) : std::string();
  bson_free(text);
  return out;
}

Connection::Connection(const std::string& uri, const std::string& default_database,
                       const std::string& setting) {
  ensure_driver_initialized();
  bson_error_t error;
  uri_.reset(mongoc_uri_new_with_error(uri.c_str(), &error));
  if (!uri_) {
    throw MongoError(setting + " is not a valid MongoDB URI (" + std::string(message_of(error)) +
                     "); expected mongodb://[user:password@]host[:port]/database");
  }
  const char* path_database = mongoc_uri_get_database(uri_.get());
  database_ = path_database && *path_database ? path_database : default_database;

  default_int32(uri_.get(), MONGOC_URI_CONNECTTIMEOUTMS, 2000);
  default_int32(uri_.get(), MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 2000);
  default_int32(uri_.get(), MONGOC_URI_SOCKETTIMEOUTMS, 10000);

  const mongoc_write_concern_t* from_uri = mongoc_uri_get_write_concern(uri_.get());
  if (mongoc_write_concern_get_w(from_uri) == MONGOC_WRITE_CONCERN_W_UNACKNOWLEDGED) {
    throw MongoError(
        setting +
        " sets w=0 (unacknowledged writes); chatd tells a sender its message is stored only after "
        "the server confirmed it. Remove w=0 (default: w=majority, journal=true)");
  }
  if (mongoc_write_concern_is_default(from_uri)) {
    WriteConcern concern(mongoc_write_concern_new());
    mongoc_write_concern_set_w(concern.get(), MONGOC_WRITE_CONCERN_W_MAJORITY);
    mongoc_write_concern_set_journal(concern.get(), true);
    mongoc_uri_set_write_concern(uri_.get(), concern.get());
  }

  pool_.reset(mongoc_client_pool_new_with_error(uri_.get(), &error));
  if (!pool_) {
    throw MongoError("cannot use " + setting + ": " + std::string(message_of(error)));
  }
  mongoc_client_pool_set_error_api(pool_.get(), MONGOC_ERROR_API_VERSION_2);
  {
    struct CallbacksDeleter {
      void operator()(mongoc_apm_callbacks_t* callbacks) const {
        mongoc_apm_callbacks_destroy(callbacks);
      }
    };
    const std::unique_ptr<mongoc_apm_callbacks_t, CallbacksDeleter> callbacks(
        mongoc_apm_callbacks_new());
    mongoc_apm_set_command_started_cb(callbacks.get(), count_command);
    mongoc_client_pool_set_apm_callbacks(pool_.get(), callbacks.get(), nullptr);
  }
  mongoc_client_pool_set_appname(pool_.get(), "chatd");

  std::string hosts;
  for (const mongoc_host_list_t* host = mongoc_uri_get_hosts(uri_.get()); host != nullptr;
       host = host->next) {
    hosts += (hosts.empty() ? "" : ",") + std::string(host->host_and_port);
  }
  description_ = (hosts.empty() ? std::string("(no host)") : hosts) + "/" + database_ + ", " +
                 describe_write_concern(mongoc_uri_get_write_concern(uri_.get()));
}

bool is_connection_error(const bson_error_t& error) {
  switch (error.domain) {
    case MONGOC_ERROR_STREAM:
    case MONGOC_ERROR_SERVER_SELECTION:
    case MONGOC_ERROR_PROTOCOL:
      return true;
    case MONGOC_ERROR_CLIENT:
      return error.code == MONGOC_ERROR_CLIENT_AUTHENTICATE;
    case MONGOC_ERROR_SERVER:
    case MONGOC_ERROR_WRITE_CONCERN: {
      // HostUnreachable, HostNotFound, NetworkTimeout, ShutdownInProgress,
      // PrimarySteppedDown, NotWritablePrimary, InterruptedAtShutdown,
      // InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk,
      // NotPrimaryOrSecondary, WriteConcernFailed (wtimeout).
      static constexpr std::array<std::uint32_t, 11> kCodes = {
          6, 7, 89, 91, 189, 10107, 11600, 11602, 13435, 13436, 64};
      return std::find(kCodes.begin(), kCodes.end(), error.code) != kCodes.end();
    }
    default:
      return false;
  }
}

CommandCounter::CommandCounter(std::atomic<std::uint64_t>& total) : previous_(counted_commands) {
  counted_commands = &total;
}

CommandCounter::~CommandCounter() {
  counted_commands = previous_;
}

bool ping(mongoc_client_t* client, bson_error_t& error) {
  Bson command, reply;
  bson_append_int32(command.get(), "ping", -1, 1);
  return mongoc_client_command_simple(client, "admin", command.get(), nullptr, reply.get(), &error);
}

bool create_indexes(mongoc_client_t* client, const std::string& database, bool& client_id_index,
                    bson_error_t& error) {
  struct DatabaseDeleter {
    void operator()(mongoc_database_t* db) const { mongoc_database_destroy(db); }
  };
  const std::unique_ptr<mongoc_database_t, DatabaseDeleter> db(
      mongoc_client_get_database(client, database.c_str()));

  Bson by_seq;
  append_key(by_seq.get(), {{"chat", 1}, {"seq", 1}});
  bson_append_utf8(by_seq.get(), "name", -1, "chat_seq", -1);
  bson_append_bool(by_seq.get(), "unique", -1, true);
  if (!create_index(db.get(), kMessages, by_seq.get(), error)) return false;

  // Retention removes the oldest entries of every chat first (MongoMaintenance::purge).
  Bson by_time;
  append_key(by_time.get(), {{"ts", 1}});
  bson_append_utf8(by_time.get(), "name", -1, "ts", -1);
  if (!create_index(db.get(), kMessages, by_time.get(), error)) return false;

  Bson by_user;
  append_key(by_user.get(), {{"participants", 1}, {"last_activity", -1}});
  bson_append_utf8(by_user.get(), "name", -1, "participants_last_activity", -1);
  if (!create_index(db.get(), kChats, by_user.get(), error)) return false;

  // Read receipts are found by chat (both users' marks at once).
  Bson reads_by_chat;
  append_key(reads_by_chat.get(), {{"_id.chat", 1}});
  bson_append_utf8(reads_by_chat.get(), "name", -1, "reads_chat", -1);
  if (!create_index(db.get(), kReads, reads_by_chat.get(), error)) return false;

  // The webhook outbox: messages with events still to send (a multikey index
  // on an array most messages lack), and the failures in the order listed.
  Bson by_hooks;
  append_key(by_hooks.get(), {{kHooksField, 1}, {"chat", 1}, {"seq", 1}});
  bson_append_utf8(by_hooks.get(), "name", -1, "hooks_chat_seq", -1);
  if (!create_index(db.get(), kMessages, by_hooks.get(), error)) return false;
  Bson reads_with_hooks;
  append_key(reads_with_hooks.get(), {{"hook_seq", 1}});
  bson_append_utf8(reads_with_hooks.get(), "name", -1, "hook_seq", -1);
  if (!create_index(db.get(), kReads, reads_with_hooks.get(), error)) return false;
  Bson failures_by_time;
  append_key(failures_by_time.get(), {{"failed", 1}});
  bson_append_utf8(failures_by_time.get(), "name", -1, "failed", -1);
  if (!create_index(db.get(), kWebhookFailed, failures_by_time.get(), error)) return false;

  // Only messages that carry a client id take part; v1 messages have none.
  Bson by_client_id;
  append_key(by_client_id.get(), {{"chat", 1}, {"sender", 1}, {"client_id", 1}});
  bson_append_utf8(by_client_id.get(), "name", -1, "chat_sender_client_id", -1);
  bson_append_bool(by_client_id.get(), "unique", -1, true);
  bson_t partial, exists;
  bson_append_document_begin(by_client_id.get(), "partialFilterExpression", -1, &partial);
  bson_append_document_begin(&partial, "client_id", -1, &exists);
  bson_append_bool(&exists, "$exists", -1, true);
  bson_append_document_end(&partial, &exists);
  bson_append_document_end(by_client_id.get(), &partial);
  client_id_index = create_index(db.get(), kMessages, by_client_id.get(), error);
  constexpr std::uint32_t kNotImplemented = 238;
  if (!client_id_index && error.domain == MONGOC_ERROR_SERVER && error.code == kNotImplemented) {
    // FerretDB 1.x. A unique index without the partial filter would make two
    // messages without a client id collide on a real MongoDB, so none is made.
    spdlog::warn(
        "mongo: the server cannot build partial indexes ({}); client ids are deduplicated by a "
        "lookup before each insert instead of by a unique index",
        message_of(error));
    return true;
  }
  return client_id_index;
}

}  // namespace chatd::store::mongo
