#include "fanout/redis/redis_connection.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <string>
#include <vector>

namespace chatd::fanout::redis {
namespace {

std::size_t hiredis_bytes(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  for (const auto& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  char* formatted = nullptr;
  const int bytes = redisFormatCommandArgv(&formatted, static_cast<int>(args.size()), argv.data(),
                                           lengths.data());
  redisFreeCommand(formatted);
  return static_cast<std::size_t>(bytes);
}

TEST(RedisConnection, CountsACommandAsTheBytesHiredisWrites) {
  // The bound counts what goes on the wire; it must match hiredis's encoding.
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"PING"},
           {"SUBSCRIBE", "chatd:chat:5:alice:bob"},
           {"PUBLISH", "chatd:chat:5:alice:bob", std::string(12345, 'x')},
           {"EVALSHA", "abc", "1", "k", "i", "-1", "30000", "", "", "", "", "", ""}}) {
    EXPECT_EQ(RedisConnection::command_bytes(args), hiredis_bytes(args)) << args[0];
  }
}

}  // namespace
}  // namespace chatd::fanout::redis
