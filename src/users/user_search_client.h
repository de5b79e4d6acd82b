#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "users/user_directory.h"

namespace chatd::users {

/// Settings of the user-search client; each limit with the reason for its default.
struct UserSearchOptions {
  /// USER_SEARCH_URL, http:// or https://; a query it already has is kept and `username`
  /// is added to (or replaced in) it.
  std::string url;
  /// The whole lookup, queueing included: a WebSocket handshake is waiting on it, and a
  /// healthy service answers in milliseconds.
  std::chrono::milliseconds timeout{2000};
  /// Requests to the service at once: a reconnect storm must not become a connect storm.
  std::size_t max_in_flight = 64;
  /// Idle keep-alive connections kept for reuse, saving a TCP (and TLS) handshake each;
  /// each one costs a file descriptor here and on the service.
  std::size_t max_idle_connections = 16;
  /// Extra PEM trust anchors for https (e.g. a private CA); the system's are always used.
  std::string ca_file;
};

/// The UserDirectory backed by the external user-search service (SPEC §1): an asynchronous
/// `GET {url}?username=...` over HTTP/1.1 or HTTPS, with keep-alive connection reuse, one
/// deadline per lookup and a bound on concurrent requests (excess lookups queue, FIFO).
/// Refusals, timeouts and malformed answers are `unavailable`, never `not_found`.
/// verify() is thread-safe; all I/O runs on `io`'s threads.
class UserSearchClient final : public UserDirectory {
 public:
  /// `options.url` must pass validate_url() and `options.ca_file`, if set, must be readable:
  /// either is a start-up error, reported by throwing std::invalid_argument. `io` must outlive
  /// this object; lookups in flight keep its internals alive until they complete.
  UserSearchClient(boost::asio::io_context& io, UserSearchOptions options);
  ~UserSearchClient() override;

  UserSearchClient(const UserSearchClient&) = delete;
  UserSearchClient& operator=(const UserSearchClient&) = delete;

  /// Why `url` cannot be used as USER_SEARCH_URL, or nullopt when it can.
  static std::optional<std::string> validate_url(std::string_view url);

  // UserDirectory
  void verify(std::string username, Handler handler) override;

  /// Lookups waiting for a free slot (at most 10 × USER_SEARCH_MAX_IN_FLIGHT), for /metrics.
  std::size_t waiting() const;

 private:
  class Impl;
  /// Shared with the lookups in flight, which may outlive this object.
  std::shared_ptr<Impl> impl_;
};

}  // namespace chatd::users
