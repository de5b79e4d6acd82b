#include "fanout/redis/redis_reply.h"

#include <hiredis/hiredis.h>

namespace chatd::fanout::redis {

RedisReply RedisReply::from(const redisReply& reply) {
  RedisReply r;
  switch (reply.type) {
    case REDIS_REPLY_INTEGER:
      r.type = Type::integer;
      r.integer = reply.integer;
      break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      r.type = reply.type == REDIS_REPLY_STRING   ? Type::string
               : reply.type == REDIS_REPLY_STATUS ? Type::status
                                                  : Type::error;
      r.str.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_ARRAY:
      r.type = Type::array;
      r.elements.reserve(reply.elements);
      for (std::size_t i = 0; i < reply.elements; ++i) {
        r.elements.push_back(from(*reply.element[i]));
      }
      break;
    default:
      break;
  }
  return r;
}

}  // namespace chatd::fanout::redis
