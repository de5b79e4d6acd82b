#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <string>
#include <string_view>

namespace chatd::users {

/// What the user-search service said of one name. `unavailable` (refused,
/// timed out, malformed answer) is never confused with `not_found`.
enum class UserStatus { found, not_found, unavailable };

std::string_view to_string(UserStatus status);

/// Answers whether a username exists. Implementations never block the caller's
/// thread: the handler runs later on its associated executor.
class UserDirectory {
 public:
  using Handler = boost::asio::any_completion_handler<void(UserStatus)>;

  virtual ~UserDirectory() = default;

  /// Starts a lookup of `username` (already validated by chat::validate_username).
  virtual void verify(std::string username, Handler handler) = 0;
};

/// Asio-style initiating function: works with callbacks, use_awaitable, etc.
template <typename CompletionToken>
auto async_verify(UserDirectory& directory, std::string username, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(UserStatus)>(
      [&directory](auto handler, std::string name) {
        directory.verify(std::move(name), UserDirectory::Handler(std::move(handler)));
      },
      token, std::move(username));
}

}  // namespace chatd::users
