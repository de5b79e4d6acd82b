#include "app/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

namespace chatd::app {
namespace {

using namespace std::chrono_literals;

// parse_config reads `.env` from the working directory: each test runs in an
// empty one, so a file left where the tests run changes nothing.
class ParseConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = std::filesystem::current_path();
    directory_ = std::filesystem::temp_directory_path() /
                 ("chatd_config_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(directory_);
    std::filesystem::current_path(directory_);
  }
  void TearDown() override {
    std::filesystem::current_path(previous_);
    std::filesystem::remove_all(directory_);
  }

  static ConfigResult parse(std::initializer_list<std::string> arguments) {
    std::vector<std::string> words{"chatd"};
    words.insert(words.end(), arguments);
    std::vector<char*> argv;
    for (std::string& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);
    return parse_config(static_cast<int>(words.size()), argv.data());
  }

 private:
  std::filesystem::path previous_;
  std::filesystem::path directory_;
};

TEST_F(ParseConfig, DefaultsAreThoseOfThePartsOptions) {
  const ConfigResult result = parse({});
  ASSERT_TRUE(result.config);
  const Config& c = *result.config;
  EXPECT_EQ(c.session.history_limit, net::SessionOptions{}.history_limit);
  EXPECT_EQ(c.session.idle_timeout, net::SessionOptions{}.idle_timeout);
  EXPECT_EQ(c.session.send_stall_timeout, c.session.idle_timeout);  // SEND_STALL_TIMEOUT_MS=0
  EXPECT_EQ(c.session.messages_per_second, net::SessionOptions{}.messages_per_second);
  EXPECT_TRUE(c.session.allowed_origins.empty());
  EXPECT_EQ(c.connections.max_total, net::ConnectionLimitOptions{}.max_total);
  EXPECT_EQ(c.connections.new_per_ip_per_second,
            net::ConnectionLimitOptions{}.new_per_ip_per_second);
  EXPECT_EQ(c.sqlite.path, store::sqlite::SqliteOptions{}.path);
  EXPECT_EQ(c.sqlite.sync, store::sqlite::SyncMode::normal);
  EXPECT_EQ(c.sqlite.max_queued_appends, store::QueueOptions{}.max_queued_appends);
  EXPECT_EQ(c.mongo.max_queued_reads, store::QueueOptions{}.max_queued_reads);
  EXPECT_EQ(c.user_search.timeout, users::UserSearchOptions{}.timeout);
  EXPECT_EQ(c.user_cache.positive_ttl, users::UserCacheOptions{}.positive_ttl);
  EXPECT_EQ(c.tokens.leeway, auth::TokenOptions{}.leeway);
  EXPECT_FALSE(c.redis);
  EXPECT_EQ(c.log.level, "info");
  EXPECT_FALSE(c.import_legacy);
}

TEST_F(ParseConfig, SettingsAFlagCannotHoldAsTheyAreAreConverted) {
  const ConfigResult result = parse({"--idle-timeout-ms",
                                     "5000",
                                     "--handshake-timeout-ms",
                                     "700",
                                     "--allowed-origins",
                                     "https://Chat.example.com/, http://localhost:8080",
                                     "--sqlite-sync",
                                     "full",
                                     "--store-max-queued-reads",
                                     "7",
                                     "--user-search-timeout-ms",
                                     "300",
                                     "--user-cache-negative-ttl-ms",
                                     "1234",
                                     "--token-leeway-seconds",
                                     "5",
                                     "--messages-per-second",
                                     "3",
                                     "--new-connections-per-ip-per-second",
                                     "4",
                                     "--max-message-bytes",
                                     "1024",
                                     "--max-text-bytes",
                                     "4096"});
  ASSERT_TRUE(result.config);
  const Config& c = *result.config;
  EXPECT_EQ(c.session.idle_timeout, 5000ms);
  EXPECT_EQ(c.session.send_stall_timeout, 5000ms);
  EXPECT_EQ(c.session.handshake_timeout, 700ms);
  EXPECT_EQ(c.session.allowed_origins,
            (std::vector<std::string>{"https://chat.example.com", "http://localhost:8080"}));
  EXPECT_EQ(c.sqlite.sync, store::sqlite::SyncMode::full);
  EXPECT_EQ(c.sqlite.max_queued_reads, 7u);
  EXPECT_EQ(c.mongo.max_queued_reads, 7u);  // whichever store MONGO_URI picks
  EXPECT_EQ(c.user_search.timeout, 300ms);
  EXPECT_EQ(c.user_cache.negative_ttl, 1234ms);
  EXPECT_EQ(c.tokens.leeway, 5s);
  EXPECT_EQ(c.session.messages_per_second, 3.0);
  EXPECT_EQ(c.connections.new_per_ip_per_second, 4.0);
  EXPECT_EQ(c.session.max_text_bytes, 1024u);  // never longer than the largest frame
}

TEST_F(ParseConfig, SendStallTimeoutOfItsOwn) {
  const ConfigResult result = parse({"--send-stall-timeout-ms", "250"});
  ASSERT_TRUE(result.config);
  EXPECT_EQ(result.config->session.send_stall_timeout, 250ms);
  EXPECT_EQ(result.config->session.idle_timeout, net::SessionOptions{}.idle_timeout);
}

TEST_F(ParseConfig, RedisUrlMakesTheRedisOptions) {
  const ConfigResult result =
      parse({"--redis-url", "redis://:secret@cache.internal:7000/2", "--mongo-uri",
             "mongodb://127.0.0.1:9/chat", "--redis-gap-ms", "50", "--presence-ttl-seconds", "9",
             "--redis-max-pending-bytes", "65536"});
  ASSERT_TRUE(result.config);
  ASSERT_TRUE(result.config->redis);
  const fanout::redis::RedisFanoutOptions& redis = *result.config->redis;
  EXPECT_EQ(redis.endpoint.host, "cache.internal");
  EXPECT_EQ(redis.endpoint.port, 7000);
  EXPECT_EQ(redis.endpoint.password, "secret");
  EXPECT_EQ(redis.endpoint.db, 2u);
  EXPECT_EQ(redis.gap_hold, 50ms);
  EXPECT_EQ(redis.presence_ttl, 9s);
  EXPECT_EQ(redis.max_pending_bytes, 65536u);
  EXPECT_EQ(redis.sync_messages, fanout::redis::RedisFanoutOptions{}.sync_messages);
  EXPECT_EQ(result.config->mongo.uri, "mongodb://127.0.0.1:9/chat");
}

TEST_F(ParseConfig, RedisWithoutMongoIsRefused) {
  const ConfigResult result = parse({"--redis-url", "redis://127.0.0.1:6379"});
  EXPECT_FALSE(result.config);
  EXPECT_EQ(result.exit_code, 2);
}

TEST_F(ParseConfig, AValueOutOfRangeIsRefused) {
  const ConfigResult result = parse({"--history-limit", "10001"});
  EXPECT_FALSE(result.config);
  EXPECT_EQ(result.exit_code, 2);
}

}  // namespace
}  // namespace chatd::app
