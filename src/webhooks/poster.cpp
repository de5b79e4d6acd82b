#include "webhooks/poster.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <stdexcept>

namespace chatd::webhooks {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
/// An answer's body is read and dropped; receivers answer with little.
constexpr std::size_t kBodyLimit = 64 * 1024;
constexpr std::size_t kMaxIdleConnections = 64;
}  // namespace

class Poster::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& io, users::SearchEndpoint endpoint, std::string secret,
       std::chrono::milliseconds timeout, const std::string& ca_file)
      : io_(io), endpoint_(std::move(endpoint)), secret_(std::move(secret)), timeout_(timeout) {
    target_ = std::string(endpoint_.base.encoded_target());
    if (target_.empty()) target_ = "/";
    if (endpoint_.tls) {
      tls_.emplace(asio::ssl::context::tls_client);
      try {
        users::configure_client_tls(*tls_, ca_file, "webhooks");
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("WEBHOOK_CA_FILE: ") + e.what());
      }
    }
  }

  void post(const Event& event, std::uint32_t attempt, Done done) {
    auto strand = asio::make_strand(io_);
    auto request = std::make_shared<users::HttpConnection::Request>(http::verb::post, target_, 11);
    request->set(http::field::host, endpoint_.host_header);
    request->set(http::field::user_agent, "chatd/" CHATD_VERSION);
    request->set(http::field::content_type, "application/json");
    request->set(http::field::connection, "keep-alive");
    request->set("Chatd-Event-Id", event.id);
    request->set("Chatd-Event-Type", event.type);
    request->set("Chatd-Delivery-Attempt", std::to_string(attempt));
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    request->set("Chatd-Signature",
                 signature(secret_, std::chrono::duration_cast<std::chrono::seconds>(now).count(),
                           event.body));
    request->body() = event.body;
    request->prepare_payload();
    asio::co_spawn(strand, run(strand, request, std::move(done)), asio::detached);
  }

 private:
  struct InFlight {
    explicit InFlight(asio::strand<asio::io_context::executor_type> strand)
        : deadline(strand), resolver(strand) {}
    asio::steady_timer deadline;
    tcp::resolver resolver;
    users::HttpConnection* active = nullptr;
    bool timed_out = false;
  };

  asio::awaitable<void> run(asio::strand<asio::io_context::executor_type> strand,
                            std::shared_ptr<users::HttpConnection::Request> request, Done done) {
    auto self = shared_from_this();
    const auto started = std::chrono::steady_clock::now();
    auto flight = std::make_shared<InFlight>(strand);
    flight->deadline.expires_after(timeout_);
    flight->deadline.async_wait([flight](beast::error_code error) {
      if (error) return;
      flight->timed_out = true;
      flight->resolver.cancel();
      if (flight->active != nullptr) flight->active->close();
    });

    users::HttpConnection::Response response;
    std::unique_ptr<users::HttpConnection> connection = idle_.take();
    if (connection) {
      flight->active = connection.get();
      response = co_await connection->exchange(*request, kBodyLimit);
      flight->active = nullptr;
      // An idle keep-alive connection the receiver closed: nothing reached it; once more.
      if (response.error && !response.received_bytes && !flight->timed_out) connection.reset();
    }
    if (!connection && !flight->timed_out) {
      connection = co_await open(*flight, response.error);
      if (connection) {
        flight->active = connection.get();
        response = co_await connection->exchange(*request, kBodyLimit);
        flight->active = nullptr;
      }
    }
    flight->deadline.cancel();

    Attempt attempt;
    attempt.took = std::chrono::steady_clock::now() - started;
    if (flight->timed_out) {
      attempt.outcome = "timeout";
      attempt.error = "timed out";
    } else if (response.error) {
      attempt.outcome = "network";
      attempt.error = response.error.message();
    } else {
      const unsigned status = response.status;
      attempt.delivered = status >= 200 && status < 300;
      attempt.outcome = attempt.delivered ? "2xx" : (status >= 400 && status < 500) ? "4xx" : "5xx";
      if (!attempt.delivered) attempt.error = "HTTP " + std::to_string(status);
      if (connection && response.keep_alive && connection->reusable()) {
        idle_.give_back(std::move(connection));
      }
    }
    done(std::move(attempt));
  }

  asio::awaitable<std::unique_ptr<users::HttpConnection>> open(InFlight& flight,
                                                               beast::error_code& error) {
    auto [resolve_error, endpoints] = co_await flight.resolver.async_resolve(
        endpoint_.host, endpoint_.port, asio::as_tuple(asio::use_awaitable));
    error = resolve_error;
    if (error || flight.timed_out) co_return nullptr;
    auto connection = tls_ ? std::make_unique<users::HttpConnection>(io_.get_executor(), *tls_)
                           : std::make_unique<users::HttpConnection>(io_.get_executor());
    flight.active = connection.get();
    error = co_await connection->connect(endpoints, endpoint_.host, endpoint_.host_is_name);
    flight.active = nullptr;
    if (error || flight.timed_out) co_return nullptr;
    co_return connection;
  }

  asio::io_context& io_;
  const users::SearchEndpoint endpoint_;
  const std::string secret_;
  const std::chrono::milliseconds timeout_;
  std::string target_;
  std::optional<asio::ssl::context> tls_;
  users::IdleConnections idle_{kMaxIdleConnections};
};

namespace {
users::SearchEndpoint parse_url(const std::string& url) {
  users::SearchEndpoint endpoint;
  if (auto problem = users::SearchEndpoint::parse(url, endpoint)) {
    throw std::invalid_argument("WEBHOOK_URL: " + *problem);
  }
  return endpoint;
}
}  // namespace

Poster::Poster(asio::io_context& io, const std::string& url, std::string secret,
               std::chrono::milliseconds timeout, const std::string& ca_file)
    : impl_(std::make_shared<Impl>(io, parse_url(url), std::move(secret), timeout, ca_file)) {}

Poster::~Poster() = default;

void Poster::post(const Event& event, std::uint32_t attempt, Done done) {
  impl_->post(event, attempt, std::move(done));
}

}  // namespace chatd::webhooks
