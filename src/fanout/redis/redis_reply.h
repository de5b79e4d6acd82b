#pragma once

#include <string>
#include <vector>

struct redisReply;

namespace chatd::fanout::redis {

/// What a Redis command answered, copied out of hiredis's reply (which hiredis
/// frees once its callback returns).
struct RedisReply {
  enum class Type { nil, integer, string, status, error, array };
  Type type = Type::nil;
  long long integer = 0;
  std::string str;  ///< string, status or error text
  std::vector<RedisReply> elements;

  static RedisReply from(const redisReply& reply);
  bool is_error() const { return type == Type::error; }
};

}  // namespace chatd::fanout::redis
