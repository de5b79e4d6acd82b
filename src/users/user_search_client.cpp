// Design: every lookup gets its own strand. Its coroutine, its deadline timer and its
// resolver all run there, so the deadline can abort the lookup's I/O (by closing the
// connection in use) without locks. The connection pool, the in-flight count and the FIFO of
// waiting lookups are the only state shared between lookups; a mutex guards them and is never
// held across I/O or while a handler runs. Handlers are posted to their own executors.
#include "users/user_search_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <deque>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include "users/http_connection.h"
#include "users/search_endpoint.h"
#include "users/soap_envelope.h"
#include "util/post_result.h"

namespace chatd::users {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

/// The service's envelope is well under 1 KiB; a bigger answer is not the service.
constexpr std::size_t kBodyLimit = 64 * 1024;
/// Waiting lookups allowed per in-flight slot. Past that the service is so far behind that
/// a new caller would time out in the queue anyway, so it is told `unavailable` at once.
constexpr std::size_t kWaitingPerSlot = 10;
/// At most one warning per interval: an outage fails every lookup and must not flood the log.
constexpr auto kWarnInterval = std::chrono::seconds(1);

using Strand = asio::strand<asio::io_context::executor_type>;

/// One verify() call, from queueing to its answer.
struct Lookup {
  Lookup(asio::io_context& io, std::string name, UserDirectory::Handler done)
      : username(std::move(name)),
        handler(std::move(done)),
        strand(asio::make_strand(io)),
        deadline(strand),
        resolver(strand) {}

  std::string username;
  UserDirectory::Handler handler;  // moved out by the one call that wins `answered`
  std::atomic<bool> answered{false};
  Strand strand;
  asio::steady_timer deadline;
  tcp::resolver resolver;
  // Touched only on `strand`.
  HttpConnection* active = nullptr;  // the connection the deadline must close
  bool timed_out = false;
};

/// Enough of an unexpected body to diagnose it, without letting it forge log lines.
std::string excerpt(std::string_view body) {
  std::string text(body.substr(0, 120));
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return text;
}

}  // namespace

class UserSearchClient::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& io, UserSearchOptions options, SearchEndpoint endpoint)
      : io_(io), options_(std::move(options)), endpoint_(std::move(endpoint)) {
    options_.max_in_flight = std::max<std::size_t>(options_.max_in_flight, 1);
    if (endpoint_.tls) configure_tls();
  }

  std::size_t waiting() {
    std::lock_guard lock(mutex_);
    return waiting_.size();
  }

  void verify(std::string username, Handler handler) {
    auto lookup = std::make_shared<Lookup>(io_, std::move(username), std::move(handler));
    std::unique_lock lock(mutex_);
    if (in_flight_ < options_.max_in_flight) {
      ++in_flight_;
      lock.unlock();
      arm_deadline(lookup);
      start(std::move(lookup));
    } else if (waiting_.size() < options_.max_in_flight * kWaitingPerSlot) {
      arm_deadline(lookup);  // before another thread can take it from the queue
      waiting_.push_back(std::move(lookup));
    } else {
      lock.unlock();
      report_failure(*lookup, "too many lookups waiting for the service");
      answer(*lookup, UserStatus::unavailable);
    }
  }

 private:
  void configure_tls() {
    tls_.emplace(asio::ssl::context::tls_client);
    configure_client_tls(*tls_, options_.ca_file, "user-search");
  }

  // --- Admission: at most max_in_flight lookups run, the rest wait in FIFO order. ---

  void arm_deadline(const std::shared_ptr<Lookup>& lookup) {
    lookup->deadline.expires_after(options_.timeout);
    lookup->deadline.async_wait([self = shared_from_this(), lookup](beast::error_code error) {
      if (!error) self->on_deadline(*lookup);
    });
  }

  void start(std::shared_ptr<Lookup> lookup) {
    asio::co_spawn(lookup->strand, run(lookup),
                   [self = shared_from_this(), lookup](std::exception_ptr error) {
                     // run() reports I/O errors as values; this is bad_alloc and the like.
                     if (error) self->answer(*lookup, UserStatus::unavailable);
                     self->on_finished();
                   });
  }

  void on_finished() {
    std::shared_ptr<Lookup> next;
    {
      std::lock_guard lock(mutex_);
      while (!waiting_.empty() && !next) {
        next = std::move(waiting_.front());
        waiting_.pop_front();
        if (next->answered) next.reset();  // its deadline passed while it waited
      }
      if (!next) --in_flight_;
    }
    if (next) start(std::move(next));
  }

  // Runs on the lookup's strand, like run(): the two never race.
  void on_deadline(Lookup& lookup) {
    if (lookup.answered) return;
    lookup.timed_out = true;
    report_failure(lookup, "timed out");
    answer(lookup, UserStatus::unavailable);
    lookup.resolver.cancel();
    if (lookup.active != nullptr) lookup.active->close();
  }

  // --- One lookup: request, at most one retry, classification. ---

  asio::awaitable<void> run(std::shared_ptr<Lookup> lookup) {
    if (lookup->answered) co_return;
    HttpConnection::Request request{http::verb::get, endpoint_.target_for(lookup->username), 11};
    request.set(http::field::host, endpoint_.host_header);
    request.set(http::field::user_agent, "chatd/" CHATD_VERSION);
    request.set(http::field::connection, "keep-alive");

    HttpConnection::Response response;
    std::unique_ptr<HttpConnection> connection = idle_.take();
    if (connection) {
      response = co_await exchange(*lookup, *connection, request);
      // A server may close an idle keep-alive connection at any moment; if the request died
      // before a single response byte, it never reached the application: retry, once.
      if (response.error && !response.received_bytes && !lookup->timed_out) connection.reset();
    }
    if (!connection) {
      connection = co_await open_connection(*lookup, response.error);
      if (connection) response = co_await exchange(*lookup, *connection, request);
    }

    UserStatus status = UserStatus::unavailable;
    if (!response.error) {
      status = classify_answer(response.status, response.body, lookup->username);
      if (status == UserStatus::unavailable) {
        report_failure(*lookup,
                       fmt::format("HTTP {}: {}", response.status, excerpt(response.body)));
      }
    } else if (!lookup->timed_out) {
      report_failure(*lookup, response.error.message());
    }
    if (connection && !response.error && response.keep_alive && !lookup->timed_out &&
        connection->reusable()) {
      idle_.give_back(std::move(connection));
    }
    lookup->deadline.cancel();
    answer(*lookup, status);
  }

  asio::awaitable<HttpConnection::Response> exchange(Lookup& lookup, HttpConnection& connection,
                                                     const HttpConnection::Request& request) {
    lookup.active = &connection;
    auto response = co_await connection.exchange(request, kBodyLimit);
    lookup.active = nullptr;
    co_return response;
  }

  asio::awaitable<std::unique_ptr<HttpConnection>> open_connection(Lookup& lookup,
                                                                   beast::error_code& error) {
    auto [resolve_error, endpoints] = co_await lookup.resolver.async_resolve(
        endpoint_.host, endpoint_.port, asio::as_tuple(asio::use_awaitable));
    error = lookup.timed_out ? asio::error::timed_out : resolve_error;
    if (error) co_return nullptr;
    auto connection = tls_ ? std::make_unique<HttpConnection>(io_.get_executor(), *tls_)
                           : std::make_unique<HttpConnection>(io_.get_executor());
    lookup.active = connection.get();
    error = co_await connection->connect(endpoints, endpoint_.host, endpoint_.host_is_name);
    lookup.active = nullptr;
    if (error) co_return nullptr;
    co_return connection;
  }

  // --- Answering and reporting. ---

  void answer(Lookup& lookup, UserStatus status) {
    if (lookup.answered.exchange(true)) return;
    util::post_result_or(std::move(lookup.handler), io_.get_executor(), status);
  }

  void report_failure(const Lookup& lookup, std::string_view reason) {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto last = last_warning_.load();
    const auto interval = std::chrono::steady_clock::duration(kWarnInterval).count();
    if (now - last >= interval && last_warning_.compare_exchange_strong(last, now)) {
      if (const auto suppressed = suppressed_warnings_.exchange(0); suppressed > 0) {
        spdlog::warn("user-search: lookup of '{}' failed: {} (and {} more since the last warning)",
                     lookup.username, reason, suppressed);
      } else {
        spdlog::warn("user-search: lookup of '{}' failed: {}", lookup.username, reason);
      }
    } else {
      ++suppressed_warnings_;
      spdlog::debug("user-search: lookup of '{}' failed: {}", lookup.username, reason);
    }
  }

  asio::io_context& io_;
  UserSearchOptions options_;
  const SearchEndpoint endpoint_;
  std::optional<asio::ssl::context> tls_;

  std::mutex mutex_;
  std::size_t in_flight_ = 0;
  std::deque<std::shared_ptr<Lookup>> waiting_;
  IdleConnections idle_{options_.max_idle_connections};

  // Far enough in the past that the first failure warns, near enough that `now - last` cannot
  // overflow.
  std::atomic<std::chrono::steady_clock::rep> last_warning_{
      std::chrono::steady_clock::time_point::min().time_since_epoch().count() / 2};
  std::atomic<std::uint64_t> suppressed_warnings_{0};
};

UserSearchClient::UserSearchClient(asio::io_context& io, UserSearchOptions options) {
  SearchEndpoint endpoint;
  if (auto error = SearchEndpoint::parse(options.url, endpoint)) {
    throw std::invalid_argument("USER_SEARCH_URL '" + options.url + "': " + *error);
  }
  impl_ = std::make_shared<Impl>(io, std::move(options), std::move(endpoint));
}

UserSearchClient::~UserSearchClient() = default;

std::optional<std::string> UserSearchClient::validate_url(std::string_view url) {
  SearchEndpoint ignored;
  return SearchEndpoint::parse(url, ignored);
}

void UserSearchClient::verify(std::string username, Handler handler) {
  impl_->verify(std::move(username), std::move(handler));
}

std::size_t UserSearchClient::waiting() const {
  return impl_->waiting();
}

}  // namespace chatd::users
