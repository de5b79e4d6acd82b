#pragma once

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/parse.hpp>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace chatd::users::test_support {

/// The SPEC §1 envelope of a known user, with `username` XML-escaped.
inline std::string envelope_for(std::string_view username) {
  std::string escaped;
  for (char c : username) {
    switch (c) {
      case '&':
        escaped += "&amp;";
        break;
      case '<':
        escaped += "&lt;";
        break;
      default:
        escaped += c;
    }
  }
  return "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" "
         "xmlns:web=\"http://www.example.org/webservice\">\n  <soapenv:Header/>\n"
         "  <soapenv:Body>\n    <web:getUserByUsernameResponse>\n      <web:id>42</web:id>\n"
         "      <web:username>" +
         escaped +
         "</web:username>\n"
         "    </web:getUserByUsernameResponse>\n  </soapenv:Body>\n</soapenv:Envelope>\n";
}

/// A scripted stand-in for the user-search service: HTTP/1.1 (or HTTPS) on 127.0.0.1, port
/// 0, serving from the test's own io_context. Counters are atomic so that tests running the
/// io_context on several threads can read them.
class FakeSearchService {
 public:
  struct Reply {
    unsigned status = 200;
    std::string body;
    std::chrono::milliseconds delay{0};  ///< a deliberately slow service
    bool close_after = false;  ///< close the connection after answering, without saying so
  };
  using Script = std::function<Reply(const std::string& username)>;

  struct Request {
    std::string target;
    std::string username;  ///< decoded
    std::string host;
    std::string user_agent;
    std::string query;  ///< decoded, all parameters
  };

  FakeSearchService(boost::asio::io_context& io, Script script,
                    boost::asio::ssl::context* tls = nullptr)
      : acceptor_(io, {boost::asio::ip::make_address("127.0.0.1"), 0}),
        script_(std::move(script)),
        tls_(tls) {
    boost::asio::co_spawn(io, accept_loop(), boost::asio::detached);
  }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }

  std::vector<Request> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

  std::atomic<int> connections{0};
  std::atomic<int> active{0};
  std::atomic<int> max_active{0};

 private:
  static constexpr auto kAwait = boost::asio::as_tuple(boost::asio::use_awaitable);
  using TlsStream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;

  boost::asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [error, socket] = co_await acceptor_.async_accept(kAwait);
      if (error) co_return;
      ++connections;
      auto executor = socket.get_executor();
      if (tls_ == nullptr) {
        boost::asio::co_spawn(executor, serve(std::move(socket)), boost::asio::detached);
      } else {
        boost::asio::co_spawn(executor, serve_tls(TlsStream(std::move(socket), *tls_)),
                              boost::asio::detached);
      }
    }
  }

  boost::asio::awaitable<void> serve_tls(TlsStream stream) {
    auto [error] = co_await stream.async_handshake(TlsStream::server, kAwait);
    if (!error) co_await serve(std::move(stream));
  }

  template <typename Stream>
  boost::asio::awaitable<void> serve(Stream stream) {
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> request;
      auto [read_error, read] = co_await http::async_read(stream, buffer, request, kAwait);
      if (read_error) co_return;
      const int now_active = ++active;
      int seen = max_active;
      while (now_active > seen && !max_active.compare_exchange_weak(seen, now_active)) {
      }
      const std::string username = record(request);
      const Reply reply = script_(username);
      if (reply.delay.count() > 0) {
        boost::asio::steady_timer timer(stream.get_executor(), reply.delay);
        co_await timer.async_wait(kAwait);
      }
      http::response<http::string_body> response{static_cast<http::status>(reply.status), 11};
      response.set(http::field::content_type, "text/xml");
      response.keep_alive(true);
      response.body() = reply.body;
      response.prepare_payload();
      auto [write_error, written] = co_await http::async_write(stream, response, kAwait);
      --active;
      if (write_error || reply.close_after) co_return;  // `stream` closes as it goes
    }
  }

  std::string record(const boost::beast::http::request<boost::beast::http::string_body>& request) {
    Request seen{std::string(request.target()), "",
                 std::string(request[boost::beast::http::field::host]),
                 std::string(request[boost::beast::http::field::user_agent]), ""};
    if (auto target = boost::urls::parse_origin_form(request.target())) {
      for (const auto& param : target->params()) {
        if (param.key == "username") seen.username = param.value;
        seen.query += param.key + "=" + param.value + ";";
      }
    }
    std::lock_guard lock(mutex_);
    requests_.push_back(seen);
    return seen.username;
  }

  boost::asio::ip::tcp::acceptor acceptor_;
  Script script_;
  boost::asio::ssl::context* tls_;
  std::mutex mutex_;
  std::vector<Request> requests_;
};

}  // namespace chatd::users::test_support
