#include "fanout/redis/redis_url.h"

#include <boost/url/parse.hpp>
#include <charconv>

namespace chatd::fanout::redis {

RedisUrl parse_redis_url(std::string_view text) {
  RedisUrl result;
  const auto parsed = boost::urls::parse_uri(text);
  if (!parsed) {
    result.error = "REDIS_URL is not a URL: " + parsed.error().message();
    return result;
  }
  const boost::urls::url_view& url = *parsed;
  if (url.scheme() == "rediss") {
    result.error =
        "REDIS_URL: TLS (rediss://) is not supported; reach Redis over a private "
        "network or a local TLS tunnel with redis://";
    return result;
  }
  if (url.scheme() != "redis") {
    result.error = "REDIS_URL must start with redis://";
    return result;
  }
  RedisEndpoint& e = result.endpoint;
  if (!url.encoded_host().empty()) e.host = url.host_address();
  if (url.has_port()) {
    const std::string_view port = url.port();
    unsigned value = 0;
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (error != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
      result.error = "REDIS_URL: port must be 1 to 65535";
      return result;
    }
    e.port = static_cast<std::uint16_t>(value);
  }
  if (url.has_userinfo()) {
    e.user = url.user();
    e.password = url.password();
    if (!url.has_password()) {  // redis://secret@host: the password alone
      e.password = e.user;
      e.user.clear();
    }
  }
  std::string_view path = url.encoded_path();
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  if (!path.empty()) {
    const auto [end, error] = std::from_chars(path.data(), path.data() + path.size(), e.db);
    if (error != std::errc() || end != path.data() + path.size() || e.db > 15) {
      result.error = "REDIS_URL: the path must be a database number, 0 to 15";
      return result;
    }
  }
  return result;
}

}  // namespace chatd::fanout::redis
