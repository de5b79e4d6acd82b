#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>
#include <string_view>

namespace chatd::net {

/// A JSON response with the usual headers (Server, Content-Type, Cache-Control: no-store).
boost::beast::http::response<boost::beast::http::string_body> json_response(
    boost::beast::http::status status, std::string body, unsigned version, bool keep_alive);

/// The body of every HTTP error chatd answers: `{"code": "snake_case", "message": "text"}`.
std::string error_body(std::string_view code, std::string_view message);

}  // namespace chatd::net
