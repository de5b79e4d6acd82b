#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace chatd::fanout::redis {

/// Where Redis is: REDIS_URL, `redis://[[user]:password@]host[:port][/db]`.
struct RedisEndpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string user;      ///< ACL user; empty = the default user
  std::string password;  ///< empty = no AUTH
  unsigned db = 0;
};

struct RedisUrl {
  RedisEndpoint endpoint;
  std::string error;  ///< Empty when the URL is good; else what is wrong with it.
};

RedisUrl parse_redis_url(std::string_view url);

}  // namespace chatd::fanout::redis
