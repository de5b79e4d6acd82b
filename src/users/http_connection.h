#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace chatd::users {

/// One HTTP/1.1 client connection, plain TCP or TLS: to the user-search service, and to the
/// webhook receiver. Not thread-safe: one request uses it at a time (a pool hands it out)
/// and makes every call, including close(), from that request's strand.
class HttpConnection {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  struct Response {
    boost::beast::error_code error;
    /// Whether the peer sent anything before `error`: if not, the request may be retried.
    bool received_bytes = false;
    unsigned status = 0;
    std::string body;
    bool keep_alive = false;
  };

  /// A plain TCP connection.
  explicit HttpConnection(boost::asio::any_io_executor executor);
  /// A TLS connection; `tls` (peer verification on) must outlive it.
  HttpConnection(boost::asio::any_io_executor executor, boost::asio::ssl::context& tls);

  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  /// Connects to the first reachable endpoint and, for TLS, handshakes with SNI `host` (when
  /// `host_is_name`; an IP address is never sent as SNI) and verifies the certificate's name.
  boost::asio::awaitable<boost::beast::error_code> connect(
      const boost::asio::ip::tcp::resolver::results_type& endpoints, const std::string& host,
      bool host_is_name);

  /// Sends `request` and reads one response; a body over `body_limit` is an error.
  boost::asio::awaitable<Response> exchange(const Request& request, std::size_t body_limit);

  /// Aborts pending operations (they complete with an error) and releases the socket.
  void close();

  /// Open, with nothing left over in the read buffer: safe to send the next request.
  bool reusable();

 private:
  using TlsStream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;

  boost::asio::ip::tcp::socket& socket();

  std::variant<boost::asio::ip::tcp::socket, TlsStream> stream_;
  boost::beast::flat_buffer buffer_;
};

/// Idle keep-alive connections kept for reuse, at most `max`; thread-safe. Last in, first
/// out: the most recently used connection is the least likely to have been closed by the
/// server's idle timeout, and the oldest ones are the first to be dropped.
class IdleConnections {
 public:
  explicit IdleConnections(std::size_t max) : max_(max) {}

  /// The most recently given back, or nullptr.
  std::unique_ptr<HttpConnection> take();
  /// Keeps `connection` unless `max` are kept already.
  void give_back(std::unique_ptr<HttpConnection> connection);

 private:
  std::mutex mutex_;
  const std::size_t max_;
  std::vector<std::unique_ptr<HttpConnection>> idle_;  // guarded by mutex_
};

/// Sets up `tls` (a tls_client context) as every client connection of chatd's wants it:
/// TLS 1.2 or later, the peer verified against the system's CAs and, when `ca_file` is set,
/// the PEM certificates in it. `who` names the client in the warning logged when the system
/// has no CA store; a `ca_file` that cannot be read throws std::invalid_argument.
void configure_client_tls(boost::asio::ssl::context& tls, const std::string& ca_file,
                          std::string_view who);

}  // namespace chatd::users
