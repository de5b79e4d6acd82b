#include "fanout/redis/presence_script.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <vector>

namespace chatd::fanout::redis {

namespace {

// KEYS[1]: the presence hash of one user in one chat: instance -> "devices:expires_ms",
// and "~v" -> the version of its last answer. ARGV: instance, devices (-1 = only read),
// ttl in ms. Drops expired entries and answers {devices of every live instance,
// version}. Versions grow with every call in Redis's execution order (microseconds of
// Redis's clock, or one more than the last), so a receiver can tell a stale total that
// arrived late from a newer one. Redis's clock is the only one used.
constexpr const char* kScript = R"lua(
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local key, devices, ttl = KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if devices > 0 then
  redis.call('HSET', key, ARGV[1], devices .. ':' .. (now_ms + ttl))
elseif devices == 0 then
  redis.call('HDEL', key, ARGV[1])
end
local total = 0
local entries = redis.call('HGETALL', key)
for i = 1, #entries, 2 do
  if entries[i] ~= '~v' then
    local n, expires = string.match(entries[i + 1], '^(%d+):(%d+)$')
    if n and tonumber(expires) > now_ms then
      total = total + tonumber(n)
    else
      redis.call('HDEL', key, entries[i])
    end
  end
end
local version = math.max(now_us, tonumber(redis.call('HGET', key, '~v') or '0') + 1)
if total > 0 then
  redis.call('HSET', key, '~v', string.format('%d', version))
  redis.call('PEXPIRE', key, ttl)
else
  redis.call('DEL', key)
end
return {total, version}
)lua";

std::string sha1_hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha1(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    static constexpr char digits[] = "0123456789abcdef";
    hex += digits[digest[i] >> 4];
    hex += digits[digest[i] & 0xf];
  }
  return hex;
}

}  // namespace

PresenceScript::PresenceScript(std::string instance, std::chrono::milliseconds ttl)
    : instance_(std::move(instance)), ttl_(ttl), sha_(sha1_hex(kScript)) {}

const char* PresenceScript::text() {
  return kScript;
}

std::optional<Presence> PresenceScript::answer(const RedisReply& reply) {
  if (reply.type != RedisReply::Type::array || reply.elements.size() != 2 ||
      reply.elements[0].type != RedisReply::Type::integer ||
      reply.elements[1].type != RedisReply::Type::integer) {
    if (reply.is_error()) spdlog::warn("fan-out: presence script failed: {}", reply.str);
    return std::nullopt;
  }
  return Presence{static_cast<std::size_t>(reply.elements[0].integer),
                  static_cast<std::uint64_t>(reply.elements[1].integer)};
}

void PresenceScript::run(RedisConnection& connection, const std::string& key,
                         std::optional<std::size_t> local, Done done) const {
  std::vector<std::string> args{"EVALSHA",
                                sha_,
                                "1",
                                key,
                                instance_,
                                local ? std::to_string(*local) : std::string("-1"),
                                std::to_string(ttl_.count())};
  // Shared by the two attempts below; called exactly once.
  auto finish = std::make_shared<Done>(std::move(done));
  auto answered = [finish](const std::optional<RedisReply>& reply) {
    (*finish)(reply ? answer(*reply) : std::nullopt);
  };
  // By its hash: the script's text crosses the network only when Redis does not
  // have it yet (a new or restarted Redis answers NOSCRIPT; EVAL then caches it).
  // The connection outlives every reply handler: it owns the hiredis context
  // that calls them, and frees it (calling each with nullopt) before it goes.
  RedisConnection* on = &connection;
  const bool sent =
      connection.command(args, [on, args, answered](std::optional<RedisReply> reply) mutable {
        if (reply && reply->is_error() && reply->str.starts_with("NOSCRIPT")) {
          args[0] = "EVAL";
          args[1] = kScript;
          if (on->command(args, [answered](std::optional<RedisReply> second) {
                answered(second);
              }) != RedisConnection::Sent::queued) {
            answered(std::nullopt);
          }
          return;
        }
        answered(reply);
      }) == RedisConnection::Sent::queued;
  if (!sent) answered(std::nullopt);
}

}  // namespace chatd::fanout::redis
