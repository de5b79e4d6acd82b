#pragma once

#include <array>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "users/user_directory.h"

namespace chatd::users {

/// What the user-search service said of a chat's two users, as a WebSocket
/// (close 1013 or 4404) and the REST API (503 or 404) both answer it.
struct ChatUsers {
  /// `unavailable` when either lookup failed (it wins: a user it could not
  /// check is not called unknown), else `not_found` when either user is
  /// unknown, else `found`.
  UserStatus status = UserStatus::found;
  std::string unknown;  ///< With not_found: the first unknown user, in path order.

  /// The verdict of both answers, in path order.
  static ChatUsers of(const std::array<UserStatus, 2>& answers,
                      const std::array<std::string, 2>& names) {
    for (const UserStatus answer : answers) {
      if (answer == UserStatus::unavailable) return {UserStatus::unavailable, {}};
    }
    for (std::size_t i = 0; i < 2; ++i) {
      if (answers[i] == UserStatus::not_found) return {UserStatus::not_found, names[i]};
    }
    return {};
  }
};

/// Looks both users up at once (the cache answers most; one request per name
/// otherwise) and calls `handler(ChatUsers)` once, on its associated
/// executor, when both have answered.
template <typename Handler>
void verify_chat_users(UserDirectory& directory, std::string user1, std::string user2,
                       Handler handler) {
  struct Pending {
    Pending(std::string first, std::string second, Handler done)
        : names{std::move(first), std::move(second)}, handler(std::move(done)) {}
    std::array<std::string, 2> names;
    std::mutex mutex;  // the two answers may come on different threads
    std::array<std::optional<UserStatus>, 2> answers;
    Handler handler;
  };
  const auto executor = boost::asio::get_associated_executor(handler);
  auto pending = std::make_shared<Pending>(std::move(user1), std::move(user2), std::move(handler));
  for (std::size_t i = 0; i < 2; ++i) {
    directory.verify(pending->names[i],
                     boost::asio::bind_executor(executor, [pending, i](UserStatus status) {
                       std::array<UserStatus, 2> both{};
                       {
                         std::lock_guard lock(pending->mutex);
                         pending->answers[i] = status;
                         if (!pending->answers[0] || !pending->answers[1]) return;
                         both = {*pending->answers[0], *pending->answers[1]};
                       }
                       std::move(pending->handler)(ChatUsers::of(both, pending->names));
                     }));
  }
}

}  // namespace chatd::users
