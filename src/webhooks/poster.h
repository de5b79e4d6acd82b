#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "users/http_connection.h"
#include "users/search_endpoint.h"
#include "webhooks/event.h"

namespace chatd::webhooks {

/// How one attempt ended.
struct Attempt {
  bool delivered = false;  ///< A 2xx answer.
  /// "2xx", "4xx", "5xx" (any other status counts as 5xx), "timeout", "network".
  const char* outcome = "network";
  std::string error;  ///< For the log and the failed list: "HTTP 500", "timed out", ...
  std::chrono::nanoseconds took{0};
};

/// POSTs events to WEBHOOK_URL over HTTP/1.1 or HTTPS (users::HttpConnection,
/// as the user-search client does), reusing idle keep-alive connections.
/// Each attempt has one deadline for connect, TLS, write and the answer.
/// post() is thread-safe; the I/O runs on `io`'s threads.
class Poster {
 public:
  using Done = std::function<void(Attempt)>;

  /// Throws std::invalid_argument when the URL or the CA file cannot be used.
  Poster(boost::asio::io_context& io, const std::string& url, std::string secret,
         std::chrono::milliseconds timeout, const std::string& ca_file);
  ~Poster();

  /// Sends `event` as attempt number `attempt`; `done` is called once, on an I/O thread.
  void post(const Event& event, std::uint32_t attempt, Done done);

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;  ///< Shared with the attempts in flight.
};

}  // namespace chatd::webhooks
