#include "users/search_endpoint.h"

#include <boost/url/encode.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <charconv>

namespace chatd::users {

namespace urls = boost::urls;

namespace {

/// url_view::port_number() wraps values over 65535 around, so the digits are checked here.
bool valid_port(std::string_view digits) {
  unsigned value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  return error == std::errc{} && end == digits.data() + digits.size() && value > 0 &&
         value <= 65535;
}

}  // namespace

std::optional<std::string> SearchEndpoint::parse(std::string_view url, SearchEndpoint& endpoint) {
  auto parsed = urls::parse_uri(url);
  if (!parsed) return "not an absolute URL (" + parsed.error().message() + ")";
  const urls::url_view view = *parsed;
  if (view.scheme_id() != urls::scheme::http && view.scheme_id() != urls::scheme::https) {
    return "the scheme must be http or https, not '" + std::string(view.scheme()) + "'";
  }
  if (!view.has_authority() || view.encoded_host().empty()) return "no host";
  // Credentials would have to be sent as Basic auth, which nothing does today; better to say
  // so at start-up than to drop them silently.
  if (view.has_userinfo()) return "credentials in the URL are not supported";
  if (view.has_port() && !valid_port(view.port())) {
    return "invalid port '" + std::string(view.port()) + "'";
  }

  endpoint.tls = view.scheme_id() == urls::scheme::https;
  endpoint.host = view.host_address();
  endpoint.host_is_name = view.host_type() == urls::host_type::name;
  endpoint.port = view.has_port() ? std::string(view.port()) : endpoint.tls ? "443" : "80";
  endpoint.host_header = view.encoded_host_and_port();
  endpoint.base = view;
  endpoint.base.remove_fragment();
  if (endpoint.base.encoded_path().empty()) endpoint.base.set_encoded_path("/");
  return std::nullopt;
}

std::string SearchEndpoint::target_for(std::string_view username) const {
  urls::url url = base;
  const std::string value = urls::encode(username, urls::unreserved_chars);
  // `value` holds only unreserved characters and %XX escapes: always a valid pct_string_view.
  url.encoded_params().set("username", urls::pct_string_view(value));
  return std::string(url.encoded_target());
}

}  // namespace chatd::users
