#include "net/json_response.h"

#include <boost/json.hpp>
#include <utility>

namespace chatd::net {
namespace http = boost::beast::http;

http::response<http::string_body> json_response(http::status status, std::string body,
                                                unsigned version, bool keep_alive) {
  http::response<http::string_body> response(status, version);
  response.set(http::field::server, "chatd/" CHATD_VERSION);
  response.set(http::field::content_type, "application/json");
  response.set(http::field::cache_control, "no-store");
  response.keep_alive(keep_alive);
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

std::string error_body(std::string_view code, std::string_view message) {
  return boost::json::serialize(boost::json::object{{"code", code}, {"message", message}});
}

}  // namespace chatd::net
