#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/url/url_view.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "net/services.h"

namespace chatd::net {

/// The REST API under /api (docs/openapi.yaml), for other services of the
/// ecosystem: a chat's messages, and sending as the authenticated user.
///
/// The caller is "me" by the same rules as a WebSocket: the token's subject
/// with SECRET_KEY (`Authorization: Bearer` or `?token=`), else user1 of the
/// path. Every answer is JSON; errors are `{"code":…,"message":…}`.
/// The number `key` of `url`'s query, nullopt when absent; `bad` is set when it is there
/// but not a whole number.
std::optional<std::uint64_t> query_number(const boost::urls::url_view& url, std::string_view key,
                                          bool& bad);

class RestApi {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;
  /// Called once with the response, on `executor`.
  using Done = std::function<void(Response)>;
  /// What a streamed body's producer answers: the next piece, "" at the end,
  /// or nullopt when it failed (the connection is then closed mid-body, so
  /// that the client sees the answer cut short rather than complete).
  using Piece = std::function<void(std::optional<std::string>)>;
  /// Asks a streamed body for its next piece, once the piece before it is
  /// written: one piece in memory at a time, whatever the body's size.
  using NextPiece = std::function<void(Piece)>;
  /// Sends a streamed answer instead of Done: `head`'s status and headers
  /// (its body is ignored), then the pieces, in chunked transfer encoding.
  using Stream = std::function<void(Response head, NextPiece next)>;

  /// One request being answered: its HTTP version and keep-alive, and where
  /// the JSON answer goes.
  struct Call {
    unsigned version = 11;
    bool keep_alive = true;
    Done done;
    Stream stream{};  ///< Empty where no streamed answer can be sent.

    void reply(boost::beast::http::status status, std::string body) const;
    void error(boost::beast::http::status status, std::string_view code,
               std::string_view message) const;
  };

  static bool handles(std::string_view target) { return target.starts_with("/api/"); }

  /// Answers `request`. Store and user-search work runs off the I/O thread;
  /// `done` is called on `executor` (the HTTP session's strand).
  static void handle(const Services& services, boost::asio::any_io_executor executor,
                     const Request& request, Done done, Stream stream = {});
};

}  // namespace chatd::net
