#include "fanout/redis/redis_url.h"

#include <gtest/gtest.h>

namespace chatd::fanout::redis {
namespace {

TEST(RedisUrl, HostPortAndDefaults) {
  const auto url = parse_redis_url("redis://redis.internal:6380");
  ASSERT_EQ(url.error, "");
  EXPECT_EQ(url.endpoint.host, "redis.internal");
  EXPECT_EQ(url.endpoint.port, 6380);
  EXPECT_EQ(url.endpoint.db, 0u);
  EXPECT_EQ(url.endpoint.password, "");
  EXPECT_EQ(parse_redis_url("redis://10.0.0.5").endpoint.port, 6379);
}

TEST(RedisUrl, PasswordUserAndDatabase) {
  auto url = parse_redis_url("redis://:s3cret@127.0.0.1:6379/2");
  ASSERT_EQ(url.error, "");
  EXPECT_EQ(url.endpoint.user, "");
  EXPECT_EQ(url.endpoint.password, "s3cret");
  EXPECT_EQ(url.endpoint.db, 2u);
  url = parse_redis_url("redis://chatd:pa%40ss@host/0");
  ASSERT_EQ(url.error, "");
  EXPECT_EQ(url.endpoint.user, "chatd");
  EXPECT_EQ(url.endpoint.password, "pa@ss") << "percent-decoded";
  url = parse_redis_url("redis://onlysecret@host");
  EXPECT_EQ(url.endpoint.password, "onlysecret");
  EXPECT_EQ(url.endpoint.user, "");
}

TEST(RedisUrl, IPv6Host) {
  const auto url = parse_redis_url("redis://[::1]:6379");
  ASSERT_EQ(url.error, "");
  EXPECT_EQ(url.endpoint.host, "::1");
}

TEST(RedisUrl, RefusesWhatItCannotServe) {
  EXPECT_NE(parse_redis_url("rediss://host:6380").error.find("TLS"), std::string::npos);
  EXPECT_NE(parse_redis_url("http://host").error, "");
  EXPECT_NE(parse_redis_url("redis://host:0").error, "");
  EXPECT_NE(parse_redis_url("redis://host:99999").error, "");
  EXPECT_NE(parse_redis_url("redis://host/16").error, "");
  EXPECT_NE(parse_redis_url("redis://host/abc").error, "");
  EXPECT_NE(parse_redis_url("not a url").error, "");
}

}  // namespace
}  // namespace chatd::fanout::redis
