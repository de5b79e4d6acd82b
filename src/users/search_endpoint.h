#pragma once

#include <boost/url/url.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace chatd::users {

/// USER_SEARCH_URL taken apart once, at start-up, into what each lookup needs.
struct SearchEndpoint {
  bool tls = false;
  std::string host;          ///< for the resolver, SNI and certificate checks; IPv6 unbracketed
  bool host_is_name = true;  ///< false for an IP literal, which is never sent as SNI
  std::string port;          ///< explicit, or the scheme's default
  std::string host_header;   ///< the URL's authority, e.g. "users.example.com:8080"
  boost::urls::url base;     ///< path and query, fragment removed

  /// Parses `url` into `endpoint`; returns why it cannot be used, or nullopt on success.
  static std::optional<std::string> parse(std::string_view url, SearchEndpoint& endpoint);

  /// The request target for one lookup: base path, the base query minus any `username`, and
  /// `username=<name>` with every byte outside RFC 3986 "unreserved" percent-encoded (so '+',
  /// '&', '=' and '/' in a name mean themselves to any server).
  std::string target_for(std::string_view username) const;
};

}  // namespace chatd::users
