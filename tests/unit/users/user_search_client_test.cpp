#include "users/user_search_client.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fake_search_service.h"
#include "test_certificate.h"

namespace chatd::users {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using test_support::envelope_for;
using test_support::FakeSearchService;
using Reply = FakeSearchService::Reply;
using Clock = std::chrono::steady_clock;

/// The deployed service's behaviour: alice exists, nobody else does.
Reply only_alice(const std::string& username) {
  if (username == "alice") return {200, envelope_for("alice")};
  return {500, "Database query error: sql: no rows in result set"};
}

class UserSearchClientTest : public ::testing::Test {
 protected:
  void start_service(FakeSearchService::Script script, asio::ssl::context* tls = nullptr) {
    service_ = std::make_unique<FakeSearchService>(io_, std::move(script), tls);
  }

  /// Options pointing at the fake service, `path_and_query` appended.
  UserSearchOptions local_options(const std::string& path_and_query = "/search") {
    UserSearchOptions options;
    options.url = "http://127.0.0.1:" + std::to_string(service_->port()) + path_and_query;
    return options;
  }

  void make_client(UserSearchOptions options) {
    client_ = std::make_unique<UserSearchClient>(io_, std::move(options));
  }
  void make_client() { make_client(local_options()); }

  std::shared_ptr<std::optional<UserStatus>> lookup(const std::string& name) {
    auto result = std::make_shared<std::optional<UserStatus>>();
    client_->verify(name, [result](UserStatus status) { *result = status; });
    return result;
  }

  /// Runs the io_context until `done` holds; false if that takes longer than `limit`.
  template <typename Predicate>
  bool run_until(Predicate done, std::chrono::milliseconds limit = 10s) {
    const auto give_up = Clock::now() + limit;
    io_.restart();
    while (!done() && Clock::now() < give_up) io_.run_one_for(10ms);
    return done();
  }

  UserStatus verify_now(const std::string& name) {
    auto result = lookup(name);
    EXPECT_TRUE(run_until([&] { return result->has_value(); })) << "no answer for " << name;
    return result->value_or(UserStatus::unavailable);
  }

  asio::io_context io_;
  std::unique_ptr<FakeSearchService> service_;
  std::unique_ptr<UserSearchClient> client_;
};

TEST_F(UserSearchClientTest, KnownUserIsFound) {
  start_service(only_alice);
  make_client();
  EXPECT_EQ(verify_now("alice"), UserStatus::found);

  const auto requests = service_->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].target, "/search?username=alice");
  EXPECT_EQ(requests[0].host, "127.0.0.1:" + std::to_string(service_->port()));
  EXPECT_EQ(requests[0].user_agent, "chatd/" CHATD_VERSION);
}

TEST_F(UserSearchClientTest, UnknownUserIsNotFound) {
  start_service(only_alice);
  make_client();
  EXPECT_EQ(verify_now("mallory"), UserStatus::not_found);
}

TEST_F(UserSearchClientTest, GenericServerErrorIsUnavailable) {
  start_service([](const std::string&) { return Reply{500, "Database query error: timeout"}; });
  make_client();
  EXPECT_EQ(verify_now("alice"), UserStatus::unavailable);
}

TEST_F(UserSearchClientTest, NameArrivesDecodedAndTheConfiguredQueryIsKept) {
  const std::string name = "a b&c/\xC3\xA9+d=e?%";
  start_service([](const std::string& username) { return Reply{200, envelope_for(username)}; });
  make_client(local_options("/api/users?tenant=t1&username=stale#fragment"));
  EXPECT_EQ(verify_now(name), UserStatus::found);

  const auto requests = service_->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].username, name);
  EXPECT_EQ(requests[0].query, "tenant=t1;username=" + name + ";");
}

TEST_F(UserSearchClientTest, SequentialLookupsReuseOneConnection) {
  start_service(only_alice);
  make_client();
  EXPECT_EQ(verify_now("alice"), UserStatus::found);
  EXPECT_EQ(verify_now("bob"), UserStatus::not_found);
  EXPECT_EQ(verify_now("alice"), UserStatus::found);
  EXPECT_EQ(service_->connections, 1);
}

TEST_F(UserSearchClientTest, RetriesOnceWhenTheServerClosedTheIdleConnection) {
  start_service([](const std::string& username) {
    Reply reply = only_alice(username);
    reply.close_after = true;  // as a keep-alive idle timeout would
    return reply;
  });
  make_client();
  EXPECT_EQ(verify_now("alice"), UserStatus::found);
  EXPECT_EQ(verify_now("alice"), UserStatus::found);
  EXPECT_EQ(service_->connections, 2);
  EXPECT_EQ(service_->requests().size(), 2u);
}

TEST_F(UserSearchClientTest, SlowServiceTimesOutAsUnavailable) {
  start_service([](const std::string&) { return Reply{200, envelope_for("alice"), 10s}; });
  auto options = local_options();
  options.timeout = 200ms;
  make_client(options);
  const auto started = Clock::now();
  EXPECT_EQ(verify_now("alice"), UserStatus::unavailable);
  const auto elapsed = Clock::now() - started;
  EXPECT_GE(elapsed, 190ms);
  EXPECT_LT(elapsed, 1500ms);
}

TEST_F(UserSearchClientTest, RefusedConnectionIsUnavailable) {
  unsigned short closed_port = 0;
  {
    asio::ip::tcp::acceptor probe(io_, {asio::ip::make_address("127.0.0.1"), 0});
    closed_port = probe.local_endpoint().port();
  }
  UserSearchOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(closed_port) + "/search";
  make_client(options);
  const auto started = Clock::now();
  EXPECT_EQ(verify_now("alice"), UserStatus::unavailable);
  EXPECT_LT(Clock::now() - started, 1s);
}

TEST_F(UserSearchClientTest, OversizedAnswerIsUnavailable) {
  start_service([](const std::string&) { return Reply{200, std::string(100 * 1024, 'x')}; });
  make_client();
  EXPECT_EQ(verify_now("alice"), UserStatus::unavailable);
}

TEST_F(UserSearchClientTest, ConcurrentRequestsAreBoundedAndExcessLookupsWait) {
  start_service([](const std::string& username) {
    return Reply{200, envelope_for(username), 30ms};
  });
  auto options = local_options();
  options.timeout = 5s;
  options.max_in_flight = 2;
  make_client(options);
  std::vector<std::shared_ptr<std::optional<UserStatus>>> results;
  for (int i = 0; i < 6; ++i) results.push_back(lookup("user" + std::to_string(i)));
  ASSERT_TRUE(run_until([&] {
    for (const auto& result : results) {
      if (!result->has_value()) return false;
    }
    return true;
  }));
  for (const auto& result : results) EXPECT_EQ(*result, UserStatus::found);
  EXPECT_EQ(service_->max_active, 2);
  EXPECT_EQ(service_->connections, 2);  // the waiting lookups reused the pooled connections
}

TEST_F(UserSearchClientTest, OverflowingTheWaitingQueueIsUnavailableAtOnce) {
  start_service([](const std::string& username) {
    return Reply{200, envelope_for(username), 10ms};
  });
  auto options = local_options();
  options.timeout = 5s;
  options.max_in_flight = 1;
  make_client(options);
  std::vector<std::shared_ptr<std::optional<UserStatus>>> results;
  for (int i = 0; i < 12; ++i) results.push_back(lookup("user" + std::to_string(i)));
  // 1 running + 10 waiting; the 12th is refused without touching the network.
  ASSERT_TRUE(run_until([&] { return results.back()->has_value(); }));
  EXPECT_EQ(*results.back(), UserStatus::unavailable);
  ASSERT_TRUE(run_until([&] { return results[10]->has_value(); }));
  for (int i = 0; i < 11; ++i) EXPECT_EQ(*results[i], UserStatus::found) << i;
}

TEST_F(UserSearchClientTest, HandlerRunsOnItsAssociatedExecutor) {
  start_service(only_alice);
  make_client();
  auto strand = asio::make_strand(io_);
  std::optional<bool> on_strand;
  client_->verify("alice", asio::bind_executor(strand, [&](UserStatus) {
                    on_strand = strand.running_in_this_thread();
                  }));
  ASSERT_TRUE(run_until([&] { return on_strand.has_value(); }));
  EXPECT_TRUE(*on_strand);
}

TEST_F(UserSearchClientTest, ConcurrentVerifyFromSeveralThreads) {
  start_service([](const std::string& username) { return Reply{200, envelope_for(username)}; });
  // 200 lookups fit: 20 running plus 10 waiting per running one.
  auto options = local_options();
  options.timeout = 5s;
  options.max_in_flight = 20;
  make_client(options);
  constexpr int kLookups = 200;
  std::atomic<int> found{0};
  std::atomic<int> answered{0};
  std::promise<void> all_answered;
  auto on_answer = [&](UserStatus status) {
    if (status == UserStatus::found) ++found;
    if (++answered == kLookups) all_answered.set_value();
  };
  auto work = asio::make_work_guard(io_);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&] { io_.run(); });
  // Half from this thread, half from the io threads themselves.
  for (int i = 0; i < kLookups; ++i) {
    std::string name = "user" + std::to_string(i % 20);
    if (i % 2 == 0) {
      client_->verify(name, on_answer);
    } else {
      asio::post(io_, [&, name] { client_->verify(name, on_answer); });
    }
  }
  EXPECT_EQ(all_answered.get_future().wait_for(30s), std::future_status::ready);
  work.reset();
  io_.stop();
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(found, kLookups);
  EXPECT_LE(service_->max_active, 20);
}

// --- HTTPS ---

class UserSearchClientTlsTest : public UserSearchClientTest {
 protected:
  void start_tls_service(const std::string& subject_alt_name) {
    const auto certificate = test_support::TestCertificate::make(subject_alt_name);
    server_tls_.use_certificate_chain(asio::buffer(certificate.certificate_pem));
    server_tls_.use_private_key(asio::buffer(certificate.key_pem), asio::ssl::context::pem);
    std::ofstream(ca_file_) << certificate.certificate_pem;
    start_service(only_alice, &server_tls_);
  }

  ~UserSearchClientTlsTest() override { std::filesystem::remove(ca_file_); }

  UserSearchOptions options_for(const std::string& host) {
    UserSearchOptions options;
    options.url = "https://" + host + ":" + std::to_string(service_->port()) + "/search";
    options.ca_file = ca_file_.string();
    return options;
  }

  asio::ssl::context server_tls_{asio::ssl::context::tls_server};
  std::filesystem::path ca_file_ = std::filesystem::temp_directory_path() /
                                   ("chatd_users_ca_" + std::to_string(::getpid()) + ".pem");
};

TEST_F(UserSearchClientTlsTest, VerifiedHttpsWorksAndReusesTheConnection) {
  start_tls_service("DNS:localhost,IP:127.0.0.1");
  make_client(options_for("localhost"));
  EXPECT_EQ(verify_now("alice"), UserStatus::found);
  EXPECT_EQ(verify_now("bob"), UserStatus::not_found);
  EXPECT_EQ(service_->connections, 1);
}

TEST_F(UserSearchClientTlsTest, CertificateForAnotherHostIsUnavailable) {
  start_tls_service("DNS:users.example.org");
  make_client(options_for("127.0.0.1"));
  EXPECT_EQ(verify_now("alice"), UserStatus::unavailable);
  EXPECT_TRUE(service_->requests().empty());
}

TEST_F(UserSearchClientTlsTest, UntrustedCertificateIsUnavailable) {
  start_tls_service("IP:127.0.0.1");
  auto options = options_for("127.0.0.1");
  options.ca_file.clear();  // only the system's trust anchors
  make_client(options);
  EXPECT_EQ(verify_now("alice"), UserStatus::unavailable);
  EXPECT_TRUE(service_->requests().empty());
}

// --- Configuration ---

TEST(UserSearchClientUrlTest, AcceptsHttpAndHttpsUrls) {
  EXPECT_EQ(UserSearchClient::validate_url("http://users:8080/search"), std::nullopt);
  EXPECT_EQ(UserSearchClient::validate_url("https://users.example.org"), std::nullopt);
  EXPECT_EQ(UserSearchClient::validate_url("HTTP://[::1]:80/x?a=b"), std::nullopt);
}

TEST(UserSearchClientUrlTest, RejectsUnusableUrls) {
  EXPECT_NE(UserSearchClient::validate_url(""), std::nullopt);
  EXPECT_NE(UserSearchClient::validate_url("users:8080/search"), std::nullopt);
  EXPECT_NE(UserSearchClient::validate_url("ftp://users/search"), std::nullopt);
  EXPECT_NE(UserSearchClient::validate_url("http:///search"), std::nullopt);
  EXPECT_NE(UserSearchClient::validate_url("http://users:99999/"), std::nullopt);
  EXPECT_NE(UserSearchClient::validate_url("http://user:secret@users/"), std::nullopt);
  EXPECT_NE(UserSearchClient::validate_url("http://us ers/"), std::nullopt);
}

TEST(UserSearchClientUrlTest, ConstructorRejectsABadUrl) {
  asio::io_context io;
  UserSearchOptions options;
  options.url = "ftp://users";
  EXPECT_THROW(UserSearchClient(io, options), std::invalid_argument);
}

}  // namespace
}  // namespace chatd::users
