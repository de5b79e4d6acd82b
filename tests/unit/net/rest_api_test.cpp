// The REST API (docs/openapi.yaml) as a client sees it, driven through
// RestApi::handle without a socket, over the real parts chatd wires in
// app/server.cpp: a SQLite store in a directory of its own, the hub and the
// local fan-out, the user directory, the token verifier and the rate limits.
// Only the user-search service is a stand-in (ScriptedUserDirectory).

#include "net/rest_api.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../auth/signed_token.h"
#include "auth/token_verifier.h"
#include "chat/hub.h"
#include "chat/message.h"
#include "fanout/local_fanout.h"
#include "metrics/chatd_metrics.h"
#include "metrics/registry.h"
#include "net/admin_api.h"
#include "net/caller_rate_limits.h"
#include "net/connection_limits.h"
#include "net/session_registry.h"
#include "store/sqlite/sqlite_store.h"
#include "users/open_user_directory.h"
#include "users/user_directory.h"
#include "util/post_result.h"

namespace chatd::net {
namespace {
namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using Response = RestApi::Response;
using Request = RestApi::Request;

// Every wait is for an event; this only bounds a hang.
constexpr auto kTimeout = std::chrono::seconds(60);
constexpr std::string_view kSecret = "rest-api-test-secret-of-reasonable-length";
const chat::ChatKey kAliceBob = chat::ChatKey::of("alice", "bob");

/// The user-search service, scripted: a name answers what the test set for
/// it, any other name is found. Answers come later, on the handler's executor,
/// as the real directories promise.
class ScriptedUserDirectory final : public users::UserDirectory {
 public:
  explicit ScriptedUserDirectory(asio::any_io_executor executor) : executor_(std::move(executor)) {}

  void set(const std::string& user, users::UserStatus status) {
    std::lock_guard lock(mutex_);
    answers_[user] = status;
  }
  std::vector<std::string> lookups() const {
    std::lock_guard lock(mutex_);
    return lookups_;
  }

  void verify(std::string username, Handler handler) override {
    users::UserStatus status = users::UserStatus::found;
    {
      std::lock_guard lock(mutex_);
      lookups_.push_back(username);
      if (const auto found = answers_.find(username); found != answers_.end()) {
        status = found->second;
      }
    }
    util::post_result_or(std::move(handler), executor_, status);
  }

 private:
  asio::any_io_executor executor_;
  mutable std::mutex mutex_;
  std::map<std::string, users::UserStatus> answers_;
  std::vector<std::string> lookups_;
};

/// A WebSocket connection of the chat without a socket: records what the hub
/// hands it (as in tests/unit/chat/hub_test.cpp).
class RecordingSubscriber final : public chat::Subscriber {
 public:
  struct Delivery {
    std::uint64_t seq;
    std::string sender;
    std::string text;
    std::string frame;
  };

  RecordingSubscriber(chat::ConnectionId id, std::string user) : id_(id), user_(std::move(user)) {}

  chat::ConnectionId connection_id() const override { return id_; }
  const std::string& user() const override { return user_; }
  void deliver(const chat::MessagePtr& message,
               const std::shared_ptr<const std::string>& frame) override {
    std::lock_guard lock(mutex_);
    deliveries_.push_back(Delivery{message->seq, message->sender, message->text, *frame});
  }

  std::vector<Delivery> deliveries() const {
    std::lock_guard lock(mutex_);
    return deliveries_;
  }

 private:
  const chat::ConnectionId id_;
  const std::string user_;
  mutable std::mutex mutex_;
  std::vector<Delivery> deliveries_;
};

std::filesystem::path fresh_directory() {
  static std::atomic<int> counter{0};
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  auto dir = std::filesystem::temp_directory_path() /
             ("chatd_rest_" + std::to_string(::getpid()) + "_" +
              std::to_string(counter.fetch_add(1)) + "_" + test->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

/// An HS256 token of `subject`, valid for an hour, signed with `key`.
std::string token_of(const std::string& subject, std::string_view key = kSecret) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  return auth::test_tokens::signed_token(json::object{{"sub", subject}, {"exp", now + 3600}},
                                         auth::test_tokens::Alg::hs256, key);
}

std::string bearer(const std::string& subject) {
  return "Bearer " + token_of(subject);
}

std::string send_body(std::string_view client_id, std::string_view text) {
  return json::serialize(json::object{{"client_id", client_id}, {"text", text}});
}

json::object body_of(const Response& response) {
  json::error_code error;
  const json::value value = json::parse(response.body(), error);
  if (error || !value.is_object()) {
    ADD_FAILURE() << "body is not a JSON object: " << response.body();
    return {};
  }
  return value.as_object();
}

/// The `code` of an error body, which must also carry a non-empty `message`.
std::string error_code_of(const Response& response) {
  const json::object body = body_of(response);
  const auto* code = body.if_contains("code");
  const auto* message = body.if_contains("message");
  EXPECT_TRUE(message != nullptr && message->is_string() && !message->get_string().empty())
      << response.body();
  return code != nullptr && code->is_string() ? std::string(code->get_string()) : "<no code>";
}

std::string error_message_of(const Response& response) {
  const json::object body = body_of(response);
  const auto* message = body.if_contains("message");
  return message != nullptr && message->is_string() ? std::string(message->get_string()) : "";
}

/// A string field's value; what else it holds, serialized, when it is not a string.
std::string text_of(const json::value& value) {
  if (const auto* text = value.if_string()) return std::string(*text);
  return "<not a string: " + json::serialize(value) + ">";
}

bool flag_of(const json::value& value) {
  EXPECT_TRUE(value.is_bool()) << json::serialize(value);
  return value.is_bool() && value.get_bool();
}

std::vector<std::uint64_t> seqs_of(const json::object& page) {
  std::vector<std::uint64_t> seqs;
  for (const auto& message : page.at("messages").as_array()) {
    seqs.push_back(message.as_object().at("seq").to_number<std::uint64_t>());
  }
  return seqs;
}

std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t last) {
  std::vector<std::uint64_t> result;
  for (std::uint64_t seq = first; seq <= last; ++seq) result.push_back(seq);
  return result;
}

class RestApiTest : public ::testing::Test {
 protected:
  RestApiTest() {
    store::sqlite::SqliteOptions sqlite;
    sqlite.path = (dir_ / "chat.db").string();
    // As app/server.cpp wires it: committed messages go out through the fan-out.
    store_ = std::make_unique<store::sqlite::SqliteStore>(
        sqlite, [this](std::span<const chat::MessagePtr> batch) {
          metrics_.messages_committed.inc(batch.size());
          fanout_.publish(batch);
        });
  }

  ~RestApiTest() override {
    store_.reset();  // drains and joins its threads while everything it calls still lives
    work_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  Services services() {
    return Services{hub_,
                    fanout_,
                    *store_,
                    *users_,
                    sessions_,
                    connection_limits_,
                    options_,
                    draining_,
                    metrics_,
                    tokens_.get(),
                    [this] { return metrics_registry_.render(); },
                    [] { return std::string_view("off"); },
                    *rest_limits_,
                    nullptr,
                    admin_token_};
  }

  /// SECRET_KEY set: every call needs a token signed with kSecret.
  void require_tokens() {
    tokens_ = std::make_unique<auth::TokenVerifier>(
        auth::TokenOptions{std::string(kSecret), std::chrono::seconds(30)});
  }

  /// Runs the test's io_context until `done()` holds (or kTimeout passes).
  template <typename Predicate>
  bool run_until(Predicate done) {
    io_.restart();
    const auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (!done()) {
      if (io_.run_one_until(deadline) == 0) return done();
    }
    return true;
  }

  /// Sends `request` to the API from the io_context's thread (as the HTTP
  /// session does from its strand) and runs it until the answer comes.
  Response call(Request request) {
    request.set(http::field::host, "localhost");
    request.prepare_payload();
    const Services wired = services();
    int answers = 0;
    bool on_executor = true;
    std::optional<Response> response;
    asio::post(io_, [&] {
      RestApi::handle(wired, io_.get_executor(), request, [&](Response answer) {
        ++answers;
        on_executor = on_executor && io_.get_executor().running_in_this_thread();
        response = std::move(answer);
      });
    });
    if (!run_until([&] { return response.has_value(); })) {
      ADD_FAILURE() << "no answer to " << request.method_string() << " " << request.target();
      return Response{};
    }
    io_.poll();  // anything else it queued would run now
    EXPECT_EQ(answers, 1) << "Done must be called exactly once";
    EXPECT_TRUE(on_executor) << "Done must run on the executor it was given";
    return std::move(*response);
  }

  Response get(const std::string& target, const std::string& authorization = {}) {
    Request request(http::verb::get, target, 11);
    if (!authorization.empty()) request.set(http::field::authorization, authorization);
    return call(std::move(request));
  }

  Response post(const std::string& target, std::string body,
                const std::string& authorization = {}) {
    Request request(http::verb::post, target, 11);
    request.set(http::field::content_type, "application/json");
    if (!authorization.empty()) request.set(http::field::authorization, authorization);
    request.body() = std::move(body);
    return call(std::move(request));
  }

  /// POSTs a message to the chat of `user1` and `user2`; expects 201.
  json::object send(const std::string& user1, const std::string& user2,
                    const std::string& client_id, const std::string& text,
                    const std::string& authorization = {}) {
    const Response response = post("/api/chats/" + user1 + "/" + user2 + "/messages",
                                   send_body(client_id, text), authorization);
    EXPECT_EQ(response.result(), http::status::created) << response.body();
    return body_of(response);
  }

  /// Every message of alice and bob's chat, read from the store.
  std::vector<chat::MessagePtr> stored(const chat::ChatKey& chat = kAliceBob) {
    store::HistoryQuery query;
    query.limit = 10'000;
    std::optional<store::HistoryPage> page;
    store_->history(chat, query,
                    store::Store::HistoryHandler(asio::bind_executor(
                        io_, [&](store::HistoryPage answer) { page = std::move(answer); })));
    EXPECT_TRUE(run_until([&] { return page.has_value(); })) << "the store did not answer";
    if (!page) return {};
    EXPECT_EQ(page->error, store::StoreError::none);
    return page->messages;
  }

  /// Appends `count` messages of `sender` straight to the store, all at once.
  void seed(const chat::ChatKey& chat, const std::string& sender, std::size_t count) {
    std::size_t done = 0;
    for (std::size_t i = 0; i < count; ++i) {
      store_->append(
          chat::PendingMessage{.chat = chat,
                               .sender = sender,
                               .text = "seed " + std::to_string(i),
                               .client_id = "seed-" + std::to_string(i)},
          store::Store::AppendHandler(asio::bind_executor(io_, [&done](store::AppendResult result) {
            EXPECT_EQ(result.error, store::StoreError::none);
            ++done;
          })));
    }
    ASSERT_TRUE(run_until([&] { return done == count; })) << done << " of " << count;
  }

  /// Returns once chat::now_ms() has moved on: the next message is stamped
  /// later than every one before it (a wait for the clock's next tick, at
  /// most a millisecond).
  static void next_millisecond() {
    const std::int64_t now = chat::now_ms();
    while (chat::now_ms() == now) {
    }
  }

  void mark_read(const chat::ChatKey& chat, const std::string& user, std::uint64_t seq) {
    std::optional<store::ReadMarks> marks;
    store_->mark_read(chat, user, seq,
                      store::Store::ReadMarksHandler(asio::bind_executor(
                          io_, [&](store::ReadMarks answer) { marks = std::move(answer); })));
    ASSERT_TRUE(run_until([&] { return marks.has_value(); }));
    ASSERT_EQ(marks->error, store::StoreError::none);
  }

  const std::filesystem::path dir_ = fresh_directory();
  metrics::Registry metrics_registry_;
  metrics::ChatdMetrics metrics_{metrics_registry_};
  chat::Hub hub_;
  fanout::LocalFanout fanout_{hub_};
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
  users::OpenUserDirectory open_users_{io_.get_executor()};
  ScriptedUserDirectory scripted_users_{io_.get_executor()};
  users::UserDirectory* users_ = &open_users_;
  SessionRegistry sessions_;
  ConnectionLimits connection_limits_{ConnectionLimitOptions{}};
  SessionOptions options_;
  std::atomic<bool> draining_{false};
  std::unique_ptr<auth::TokenVerifier> tokens_;  // null: no SECRET_KEY
  std::string admin_token_;                      // empty: no admin API
  std::unique_ptr<CallerRateLimits> rest_limits_ =
      std::make_unique<CallerRateLimits>(options_.messages_per_second, options_.message_burst);
  std::unique_ptr<store::sqlite::SqliteStore> store_;  // last: destroyed first
};

// ---------------------------------------------------------------------------
// POST /api/chats/{user1}/{user2}/messages
// ---------------------------------------------------------------------------

TEST_F(RestApiTest, PostStoresTheMessageAndAnswers201WithAnAck) {
  const Response response =
      post("/api/chats/alice/bob/messages", send_body("billing-42", "Your invoice is ready"));

  EXPECT_EQ(response.result(), http::status::created) << response.body();
  EXPECT_EQ(response[http::field::content_type], "application/json");
  EXPECT_EQ(response[http::field::cache_control], "no-store");
  EXPECT_EQ(response.version(), 11u);
  EXPECT_TRUE(response.keep_alive());
  const json::object ack = body_of(response);
  EXPECT_EQ(text_of(ack.at("type")), "ack");
  EXPECT_EQ(text_of(ack.at("client_id")), "billing-42");
  EXPECT_EQ(ack.at("id").as_string().size(), 24u) << response.body();
  EXPECT_EQ(ack.at("seq").to_number<std::uint64_t>(), 1u);
  EXPECT_TRUE(ack.at("ts").is_string() && ack.at("ts").as_string().ends_with("Z"))
      << response.body();
  EXPECT_EQ(flag_of(ack.at("duplicate")), false);

  const auto messages = stored();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0]->sender, "alice") << "without SECRET_KEY the caller is user1 of the path";
  EXPECT_EQ(messages[0]->text, "Your invoice is ready");
  EXPECT_EQ(messages[0]->id, text_of(ack.at("id")));
  EXPECT_EQ(metrics_.messages_received.value(), 1u);

  // The path's other order is the same chat, with its own user1 as the caller.
  const json::object second = send("bob", "alice", "reply-1", "Thanks");
  EXPECT_EQ(second.at("seq").to_number<std::uint64_t>(), 2u);
  ASSERT_EQ(stored().size(), 2u);
  EXPECT_EQ(stored()[1]->sender, "bob");
}

TEST_F(RestApiTest, SameClientIdAgainAnswers200DuplicateAndStoresNothingTwice) {
  const json::object first = send("alice", "bob", "retry-me", "once");

  const Response again = post("/api/chats/alice/bob/messages", send_body("retry-me", "once"));
  EXPECT_EQ(again.result(), http::status::ok) << again.body();
  const json::object ack = body_of(again);
  EXPECT_EQ(text_of(ack.at("type")), "ack");
  EXPECT_EQ(flag_of(ack.at("duplicate")), true);
  EXPECT_EQ(text_of(ack.at("client_id")), "retry-me");
  EXPECT_EQ(ack.at("id"), first.at("id")) << "the first ack, again";
  EXPECT_EQ(ack.at("seq"), first.at("seq"));
  EXPECT_EQ(ack.at("ts"), first.at("ts"));

  const auto messages = stored();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0]->text, "once");
  EXPECT_EQ(metrics_.messages_committed.value(), 1u);

  // Another client_id is another message.
  EXPECT_EQ(send("alice", "bob", "retry-me-2", "twice").at("seq").to_number<std::uint64_t>(), 2u);
}

TEST_F(RestApiTest, PostedMessageIsDeliveredToTheChatsSubscribers) {
  auto bob = std::make_shared<RecordingSubscriber>(7, "bob");
  auto carol = std::make_shared<RecordingSubscriber>(8, "carol");
  hub_.join(kAliceBob, bob);
  hub_.join(chat::ChatKey::of("alice", "carol"), carol);

  const json::object ack = send("alice", "bob", "c-1", "hello bob");
  // A retry is answered from the store and not delivered again.
  EXPECT_EQ(post("/api/chats/alice/bob/messages", send_body("c-1", "hello bob")).result(),
            http::status::ok);

  // The store hands a commit to the fan-out before it answers, so the
  // delivery has happened by the time the response is there.
  const auto deliveries = bob->deliveries();
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_EQ(deliveries[0].seq, ack.at("seq").to_number<std::uint64_t>());
  EXPECT_EQ(deliveries[0].sender, "alice");
  EXPECT_EQ(deliveries[0].text, "hello bob");
  EXPECT_NE(deliveries[0].frame.find("hello bob"), std::string::npos) << deliveries[0].frame;
  EXPECT_TRUE(carol->deliveries().empty()) << "another chat's connection gets nothing";

  hub_.leave(kAliceBob, *bob);
  hub_.leave(chat::ChatKey::of("alice", "carol"), *carol);
}

TEST_F(RestApiTest, InvalidBodyIs400WithTheV2ErrorCode) {
  const struct {
    std::string body;
    std::string code;
  } cases[] = {
      {"not json", "invalid_json"},
      {"", "invalid_json"},
      {"[1, 2]", "invalid_frame"},
      {R"({"text": "hi"})", "invalid_client_id"},
      {R"({"client_id": "", "text": "hi"})", "invalid_client_id"},
      {R"({"client_id": 5, "text": "hi"})", "invalid_client_id"},
      {R"({"client_id": ")" + std::string(129, 'x') + R"(", "text": "hi"})", "invalid_client_id"},
      {R"({"client_id": "c"})", "invalid_text"},
      {R"({"client_id": "c", "text": 5})", "invalid_text"},
      {R"({"client_id": "c", "text": ""})", "empty_text"},
  };
  for (const auto& c : cases) {
    const Response response = post("/api/chats/alice/bob/messages", c.body);
    EXPECT_EQ(response.result(), http::status::bad_request) << c.body;
    EXPECT_EQ(error_code_of(response), c.code) << c.body;
    EXPECT_EQ(response[http::field::content_type], "application/json");
  }
  EXPECT_TRUE(stored().empty());
  EXPECT_EQ(metrics_.messages_received.value(), 0u);
}

TEST_F(RestApiTest, TextLongerThanMaxTextBytesIs400TextTooLong) {
  options_.max_text_bytes = 8;

  const Response response = post("/api/chats/alice/bob/messages", send_body("long", "123456789"));
  EXPECT_EQ(response.result(), http::status::bad_request);
  EXPECT_EQ(error_code_of(response), "text_too_long");
  EXPECT_NE(error_message_of(response).find("8 bytes"), std::string::npos)
      << error_message_of(response);
  EXPECT_TRUE(stored().empty());

  send("alice", "bob", "fits", "12345678");  // exactly the limit is fine
  EXPECT_EQ(stored().size(), 1u);
}

TEST_F(RestApiTest, UnknownUserIs404AndNothingIsStored) {
  users_ = &scripted_users_;
  scripted_users_.set("mallory", users::UserStatus::not_found);

  const Response response = post("/api/chats/alice/mallory/messages", send_body("c", "hi"));
  EXPECT_EQ(response.result(), http::status::not_found);
  EXPECT_EQ(error_code_of(response), "unknown_user");
  EXPECT_EQ(error_message_of(response), "unknown user: mallory");
  EXPECT_TRUE(stored(chat::ChatKey::of("alice", "mallory")).empty());
  EXPECT_EQ(metrics_.messages_received.value(), 0u);

  // Both users are looked up; a known pair goes through the same directory.
  const auto lookups = scripted_users_.lookups();
  EXPECT_EQ(lookups, (std::vector<std::string>{"alice", "mallory"}));
  send("alice", "bob", "c", "hi");
}

TEST_F(RestApiTest, UserSearchUnavailableIs503AndWinsOverUnknown) {
  users_ = &scripted_users_;
  scripted_users_.set("mallory", users::UserStatus::not_found);
  scripted_users_.set("bob", users::UserStatus::unavailable);

  for (const std::string target :
       {"/api/chats/alice/bob/messages", "/api/chats/mallory/bob/messages"}) {
    const Response response = post(target, send_body("c", "hi"));
    EXPECT_EQ(response.result(), http::status::service_unavailable) << target;
    EXPECT_EQ(error_code_of(response), "user_search_unavailable") << target;
  }
  EXPECT_TRUE(stored().empty());
  EXPECT_TRUE(stored(chat::ChatKey::of("bob", "mallory")).empty());
}

TEST_F(RestApiTest, PastTheCallersAllowanceIs429RateLimited) {
  // A burst of 2 that refills once in ~17 minutes: the third message is refused.
  rest_limits_ = std::make_unique<CallerRateLimits>(0.001, 2);

  send("alice", "bob", "m1", "one");
  send("alice", "bob", "m2", "two");
  const Response refused = post("/api/chats/alice/bob/messages", send_body("m3", "three"));
  EXPECT_EQ(refused.result(), http::status::too_many_requests);
  EXPECT_EQ(error_code_of(refused), "rate_limited");
  EXPECT_EQ(stored().size(), 2u) << "a refused message is not stored";

  // The allowance is the caller's: bob, posting into the same chat, has his own.
  send("bob", "alice", "b1", "from bob");
  EXPECT_EQ(stored().size(), 3u);
}

TEST_F(RestApiTest, WhileDrainingChatRequestsAre503ShuttingDown) {
  draining_ = true;
  for (const Response& response : {post("/api/chats/alice/bob/messages", send_body("c", "hi")),
                                   get("/api/chats/alice/bob/messages")}) {
    EXPECT_EQ(response.result(), http::status::service_unavailable);
    EXPECT_EQ(error_code_of(response), "shutting_down");
  }
  EXPECT_TRUE(stored().empty());
}

// ---------------------------------------------------------------------------
// GET /api/chats/{user1}/{user2}/messages
// ---------------------------------------------------------------------------

TEST_F(RestApiTest, GetAnswersTheNewestPageOldestFirst) {
  for (int i = 1; i <= 5; ++i) {
    send(i % 2 == 1 ? "alice" : "bob", i % 2 == 1 ? "bob" : "alice", "c" + std::to_string(i),
         "text " + std::to_string(i));
  }

  const Response response = get("/api/chats/alice/bob/messages?limit=2");
  EXPECT_EQ(response.result(), http::status::ok) << response.body();
  EXPECT_EQ(response[http::field::content_type], "application/json");
  const json::object page = body_of(response);
  EXPECT_EQ(text_of(page.at("chat")), kAliceBob.str());
  EXPECT_EQ(seqs_of(page), (std::vector<std::uint64_t>{4, 5}));
  EXPECT_EQ(flag_of(page.at("has_more")), true);
  const json::object& last = page.at("messages").as_array().back().as_object();
  EXPECT_EQ(text_of(last.at("type")), "message");
  EXPECT_EQ(text_of(last.at("sender")), "alice");
  EXPECT_EQ(text_of(last.at("text")), "text 5");
  EXPECT_EQ(last.at("id").as_string().size(), 24u);
  EXPECT_TRUE(last.at("ts").is_string());

  // Without a limit: HISTORY_LIMIT (100) covers them all. Either order of
  // the path names the same chat.
  const json::object all = body_of(get("/api/chats/bob/alice/messages"));
  EXPECT_EQ(text_of(all.at("chat")), kAliceBob.str());
  EXPECT_EQ(seqs_of(all), range(1, 5));
  EXPECT_EQ(flag_of(all.at("has_more")), false);

  const json::object empty = body_of(get("/api/chats/alice/carol/messages"));
  EXPECT_TRUE(empty.at("messages").as_array().empty());
  EXPECT_EQ(flag_of(empty.at("has_more")), false);
}

TEST_F(RestApiTest, GetWithoutLimitAnswersHistoryLimit) {
  options_.history_limit = 3;
  seed(kAliceBob, "alice", 5);
  const json::object page = body_of(get("/api/chats/alice/bob/messages"));
  EXPECT_EQ(seqs_of(page), range(3, 5));
  EXPECT_EQ(flag_of(page.at("has_more")), true);
}

TEST_F(RestApiTest, GetBeforePagesBackwards) {
  seed(kAliceBob, "alice", 5);

  const json::object page = body_of(get("/api/chats/alice/bob/messages?before=4&limit=2"));
  EXPECT_EQ(seqs_of(page), (std::vector<std::uint64_t>{2, 3}));
  EXPECT_EQ(flag_of(page.at("has_more")), true);

  const json::object oldest = body_of(get("/api/chats/alice/bob/messages?limit=2&before=2"));
  EXPECT_EQ(seqs_of(oldest), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(flag_of(oldest.at("has_more")), false);
}

TEST_F(RestApiTest, GetAfterAnswersTheOldestPagePastIt) {
  seed(kAliceBob, "alice", 5);

  const json::object page = body_of(get("/api/chats/alice/bob/messages?after=2&limit=2"));
  EXPECT_EQ(seqs_of(page), (std::vector<std::uint64_t>{3, 4}));
  EXPECT_EQ(flag_of(page.at("has_more")), true);

  const json::object rest = body_of(get("/api/chats/alice/bob/messages?after=4"));
  EXPECT_EQ(seqs_of(rest), (std::vector<std::uint64_t>{5}));
  EXPECT_EQ(flag_of(rest.at("has_more")), false);

  const json::object none = body_of(get("/api/chats/alice/bob/messages?after=5"));
  EXPECT_TRUE(none.at("messages").as_array().empty());
  EXPECT_EQ(flag_of(none.at("has_more")), false);

  // after=0 is "from the start", not "no after": the oldest page.
  EXPECT_EQ(seqs_of(body_of(get("/api/chats/alice/bob/messages?after=0&limit=2"))),
            (std::vector<std::uint64_t>{1, 2}));
}

TEST_F(RestApiTest, LimitIsCappedAt500) {
  seed(kAliceBob, "alice", 501);

  const json::object page = body_of(get("/api/chats/alice/bob/messages?limit=100000"));
  EXPECT_EQ(seqs_of(page), range(2, 501));
  EXPECT_EQ(flag_of(page.at("has_more")), true);

  const json::object oldest = body_of(get("/api/chats/alice/bob/messages?after=0&limit=501"));
  EXPECT_EQ(seqs_of(oldest), range(1, 500));
  EXPECT_EQ(flag_of(oldest.at("has_more")), true);
}

TEST_F(RestApiTest, BadQueryIs400InvalidQuery) {
  seed(kAliceBob, "alice", 1);
  for (const std::string query :
       {"limit=abc", "limit=", "limit=-1", "limit=1.5", "limit=2x", "before=abc", "before=-3",
        "after=x", "after=99999999999999999999999", "limit=10&before=%20"}) {
    const Response response = get("/api/chats/alice/bob/messages?" + query);
    EXPECT_EQ(response.result(), http::status::bad_request) << query;
    EXPECT_EQ(error_code_of(response), "invalid_query") << query;
  }
  const Response conversations = get("/api/users/alice/conversations?limit=many");
  EXPECT_EQ(conversations.result(), http::status::bad_request);
  EXPECT_EQ(error_code_of(conversations), "invalid_query");

  // Parameters the API does not know are ignored.
  EXPECT_EQ(get("/api/chats/alice/bob/messages?page=abc").result(), http::status::ok);
}

// ---------------------------------------------------------------------------
// GET /api/users/{user}/conversations
// ---------------------------------------------------------------------------

TEST_F(RestApiTest, ConversationsAreNewestFirstWithUnreadCounts) {
  send("alice", "dave", "d1", "to dave");  // alice's own message: nothing unread
  send("bob", "alice", "b1", "bob 1");
  send("bob", "alice", "b2", "bob 2");
  send("alice", "bob", "a1", "alice 1");
  send("carol", "alice", "c1", "carol 1");
  mark_read(kAliceBob, "alice", 3);  // read up to her own message
  // bob's chat, older than carol's, has the newest activity now. Its message
  // is stamped in a later millisecond than carol's, so that the order is
  // the activity's and not the tie-break's (the newer chat first).
  next_millisecond();
  send("bob", "alice", "b3", "bob 3");

  const Response response = get("/api/users/alice/conversations");
  EXPECT_EQ(response.result(), http::status::ok) << response.body();
  EXPECT_EQ(response[http::field::content_type], "application/json");
  const json::object body = body_of(response);
  EXPECT_EQ(text_of(body.at("user")), "alice");
  const json::array& list = body.at("conversations").as_array();
  ASSERT_EQ(list.size(), 3u) << response.body();

  const json::object& bob = list[0].as_object();
  EXPECT_EQ(text_of(bob.at("chat")), kAliceBob.str());
  EXPECT_EQ(text_of(bob.at("peer")), "bob");
  const json::object& last = bob.at("last_message").as_object();
  EXPECT_EQ(text_of(last.at("type")), "message");
  EXPECT_EQ(text_of(last.at("text")), "bob 3");
  EXPECT_EQ(text_of(last.at("sender")), "bob");
  EXPECT_EQ(last.at("seq").to_number<std::uint64_t>(), 4u);
  EXPECT_EQ(bob.at("read_seq").to_number<std::uint64_t>(), 3u);
  EXPECT_EQ(bob.at("unread").to_number<std::uint64_t>(), 1u) << "bob 3, after her read mark";

  const json::object& carol = list[1].as_object();
  EXPECT_EQ(text_of(carol.at("chat")), chat::ChatKey::of("alice", "carol").str());
  EXPECT_EQ(text_of(carol.at("peer")), "carol");
  EXPECT_EQ(text_of(carol.at("last_message").as_object().at("text")), "carol 1");
  EXPECT_EQ(carol.at("read_seq").to_number<std::uint64_t>(), 0u);
  EXPECT_EQ(carol.at("unread").to_number<std::uint64_t>(), 1u);

  const json::object& dave = list[2].as_object();
  EXPECT_EQ(text_of(dave.at("peer")), "dave");
  EXPECT_EQ(dave.at("unread").to_number<std::uint64_t>(), 0u);

  // limit keeps the newest; bob sees the same chat from his side.
  const json::object newest = body_of(get("/api/users/alice/conversations?limit=1"));
  ASSERT_EQ(newest.at("conversations").as_array().size(), 1u);
  EXPECT_EQ(text_of(newest.at("conversations").as_array()[0].as_object().at("peer")), "bob");
  const json::object of_bob = body_of(get("/api/users/bob/conversations"));
  ASSERT_EQ(of_bob.at("conversations").as_array().size(), 1u);
  const json::object& alice = of_bob.at("conversations").as_array()[0].as_object();
  EXPECT_EQ(text_of(alice.at("peer")), "alice");
  EXPECT_EQ(alice.at("read_seq").to_number<std::uint64_t>(), 0u);
  EXPECT_EQ(alice.at("unread").to_number<std::uint64_t>(), 1u) << "alice 1; bob read nothing";

  const json::object nobody = body_of(get("/api/users/erin/conversations"));
  EXPECT_TRUE(nobody.at("conversations").as_array().empty());
}

// ---------------------------------------------------------------------------
// With SECRET_KEY
// ---------------------------------------------------------------------------

TEST_F(RestApiTest, WithSecretKeyNoOrBadTokenIs401) {
  require_tokens();
  seed(kAliceBob, "alice", 1);

  const Response no_token = post("/api/chats/alice/bob/messages", send_body("c", "hi"));
  EXPECT_EQ(no_token.result(), http::status::unauthorized);
  EXPECT_EQ(error_code_of(no_token), "unauthorized");
  EXPECT_EQ(error_message_of(no_token), "unauthorized: missing");

  const Response wrong_key = get("/api/chats/alice/bob/messages",
                                 "Bearer " + token_of("alice", "another-secret-key-entirely"));
  EXPECT_EQ(wrong_key.result(), http::status::unauthorized);
  EXPECT_EQ(error_message_of(wrong_key), "unauthorized: bad_signature");

  const Response garbage = get("/api/chats/alice/bob/messages?token=not-a-token");
  EXPECT_EQ(garbage.result(), http::status::unauthorized);
  EXPECT_EQ(error_message_of(garbage), "unauthorized: malformed");

  const Response conversations = get("/api/users/alice/conversations");
  EXPECT_EQ(conversations.result(), http::status::unauthorized);
  EXPECT_EQ(error_code_of(conversations), "unauthorized");

  EXPECT_EQ(stored().size(), 1u) << "a refused POST stores nothing";
}

TEST_F(RestApiTest, WithSecretKeyATokenOfAnotherUserIs403) {
  require_tokens();

  for (const Response& response :
       {post("/api/chats/alice/bob/messages", send_body("c", "hi"), bearer("carol")),
        get("/api/chats/alice/bob/messages", bearer("carol"))}) {
    EXPECT_EQ(response.result(), http::status::forbidden);
    EXPECT_EQ(error_code_of(response), "forbidden");
    EXPECT_EQ(error_message_of(response), "token subject is not a user of this chat");
  }

  const Response conversations = get("/api/users/alice/conversations", bearer("bob"));
  EXPECT_EQ(conversations.result(), http::status::forbidden);
  EXPECT_EQ(error_code_of(conversations), "forbidden");
  EXPECT_EQ(error_message_of(conversations), "a token reads only its own conversations");

  EXPECT_TRUE(stored().empty());
}

TEST_F(RestApiTest, WithSecretKeyTheTokensSubjectIsTheSender) {
  require_tokens();

  // bob is user2 of the path: with a token, the caller is the token's subject.
  send("alice", "bob", "b1", "from bob", bearer("bob"));
  // The token may come as ?token= too.
  const Response by_query = post("/api/chats/alice/bob/messages?token=" + token_of("alice"),
                                 send_body("a1", "from alice"));
  EXPECT_EQ(by_query.result(), http::status::created) << by_query.body();

  const auto messages = stored();
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0]->sender, "bob");
  EXPECT_EQ(messages[1]->sender, "alice");

  const Response page = get("/api/chats/alice/bob/messages", bearer("bob"));
  EXPECT_EQ(page.result(), http::status::ok);
  EXPECT_EQ(seqs_of(body_of(page)), range(1, 2));

  const Response own = get("/api/users/bob/conversations", bearer("bob"));
  EXPECT_EQ(own.result(), http::status::ok) << own.body();
  EXPECT_EQ(body_of(own).at("conversations").as_array().size(), 1u);
}

// ---------------------------------------------------------------------------
// Routes and methods
// ---------------------------------------------------------------------------

TEST_F(RestApiTest, UnknownRouteIs404NotFound) {
  for (const std::string target :
       {"/api/", "/api/chats", "/api/chats/alice/bob", "/api/chats/alice/bob/messages/1/x",
        "/api/chats/alice/bob/history", "/api/users/alice", "/api/users/alice/chats",
        "/api/v2/chats/alice/bob/messages"}) {
    const Response response = get(target);
    EXPECT_EQ(response.result(), http::status::not_found) << target;
    EXPECT_EQ(error_code_of(response), "not_found") << target;
    EXPECT_EQ(response[http::field::content_type], "application/json") << target;
  }
}

TEST_F(RestApiTest, OneMessageIsChangedByPatchOrDeleteOnly) {
  const Response response = get("/api/chats/alice/bob/messages/1");
  EXPECT_EQ(response.result(), http::status::method_not_allowed);
  EXPECT_EQ(error_code_of(response), "method_not_allowed");
}

TEST_F(RestApiTest, WrongMethodIs405MethodNotAllowed) {
  for (const http::verb method : {http::verb::put, http::verb::delete_, http::verb::patch}) {
    Request request(method, "/api/chats/alice/bob/messages", 11);
    request.body() = send_body("c", "hi");
    const Response response = call(std::move(request));
    EXPECT_EQ(response.result(), http::status::method_not_allowed) << http::to_string(method);
    EXPECT_EQ(error_code_of(response), "method_not_allowed");
    EXPECT_EQ(error_message_of(response), "GET to read the messages, POST to send one");
  }
  const Response conversations = post("/api/users/alice/conversations", "{}");
  EXPECT_EQ(conversations.result(), http::status::method_not_allowed);
  EXPECT_EQ(error_code_of(conversations), "method_not_allowed");
  EXPECT_EQ(error_message_of(conversations), "GET only");
  EXPECT_TRUE(stored().empty());
}

TEST_F(RestApiTest, MalformedPathsAre400) {
  for (const std::string target : {"/api/chats/%01/bob/messages", "/api/chats/alice/%C3/messages",
                                   "/api/users/%01/conversations"}) {
    const Response response = get(target);
    EXPECT_EQ(response.result(), http::status::bad_request) << target;
    EXPECT_EQ(error_code_of(response), "invalid_username") << target;
  }
  const Response bad_escape = get("/api/chats/%zz/bob/messages");
  EXPECT_EQ(bad_escape.result(), http::status::bad_request);
  EXPECT_EQ(error_code_of(bad_escape), "invalid_path");

  // Names are percent-decoded: "al%69ce" is alice.
  send("al%69ce", "bob", "c", "decoded");
  ASSERT_EQ(stored().size(), 1u);
  EXPECT_EQ(stored()[0]->sender, "alice");
}

TEST_F(RestApiTest, AnswersInTheRequestsHttpVersionAndKeepAlive) {
  Request request(http::verb::get, "/api/chats/alice/bob/messages", 10);
  const Response response = call(std::move(request));
  EXPECT_EQ(response.result(), http::status::ok);
  EXPECT_EQ(response.version(), 10u);
  EXPECT_FALSE(response.keep_alive()) << "HTTP/1.0 without keep-alive closes";

  Request closing(http::verb::get, "/api/nowhere", 11);
  closing.keep_alive(false);
  const Response refused = call(std::move(closing));
  EXPECT_EQ(refused.result(), http::status::not_found);
  EXPECT_FALSE(refused.keep_alive());
}

// ---------------------------------------------------------------------------
// /api/admin/ (ADMIN_TOKEN)
// ---------------------------------------------------------------------------

TEST_F(RestApiTest, TheAdminApiIsNotThereWithoutAdminToken) {
  const auto answer = get("/api/admin/webhooks/failed", "Bearer anything");
  EXPECT_EQ(answer.result(), http::status::not_found);
}

TEST_F(RestApiTest, TheAdminApiWantsTheAdminTokenAsBearer) {
  admin_token_ = "s3cret-admin";
  for (const std::string authorization :
       {"", "Bearer wrong", "Bearer s3cret-admi", "Bearer s3cret-admin2", "Basic s3cret-admin",
        "s3cret-admin"}) {
    const auto answer = get("/api/admin/webhooks/failed", authorization);
    EXPECT_EQ(answer.result(), http::status::unauthorized) << authorization;
    EXPECT_EQ(answer[http::field::www_authenticate], "Bearer") << authorization;
  }
  // The right token, but webhooks are off here: the endpoint says so.
  const auto answer = get("/api/admin/webhooks/failed", "Bearer s3cret-admin");
  EXPECT_EQ(answer.result(), http::status::not_found);
  EXPECT_EQ(json::parse(answer.body()).at("code"), "webhooks_off");
  EXPECT_EQ(get("/api/admin/other", "bearer s3cret-admin").result(), http::status::not_found);
}

TEST(BearerMatches, OnlyTheExactTokenAfterTheScheme) {
  EXPECT_TRUE(bearer_matches("Bearer abc", "abc"));
  EXPECT_TRUE(bearer_matches("bearer abc", "abc"));
  EXPECT_FALSE(bearer_matches("Bearer abcd", "abc"));
  EXPECT_FALSE(bearer_matches("Bearer ab", "abc"));
  EXPECT_FALSE(bearer_matches("Bearer  abc", "abc"));
  EXPECT_FALSE(bearer_matches("abc", "abc"));
  EXPECT_FALSE(bearer_matches("Bearer ", ""));
}

}  // namespace
}  // namespace chatd::net
