#include "net/http_session.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/json.hpp>
#include <optional>

#include "chat/frames.h"
#include "chat/hub.h"
#include "fanout/fanout.h"
#include "net/chat_path.h"
#include "net/json_response.h"
#include "net/request_reader.h"
#include "net/rest_api.h"
#include "net/upgrade_check.h"
#include "net/web_assets.h"
#include "net/websocket/session.h"
#include "store/store.h"

namespace chatd::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

HttpSession::HttpSession(asio::ip::tcp::socket socket, const Services& services)
    : stream_(std::move(socket)), services_(services) {}

void HttpSession::start() {
  // Start on the connection's strand: every handler of this session runs there.
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
}

void HttpSession::read_request() {
  auto parser = std::make_shared<Parser>();
  apply_limits(*parser, limits());
  stream_.expires_after(services_.options.handshake_timeout);
  // The header first, to check its size and framing before any body is read
  // (request_reader.h; read_request() there runs these same steps over a buffer).
  http::async_read_header(
      stream_, buffer_, *parser,
      [self = shared_from_this(), parser](beast::error_code error, std::size_t header_bytes) {
        if (!error) error = check_header(*parser, header_bytes, self->limits());
        if (error || parser->is_done()) {
          self->on_read(error, *parser);
          return;
        }
        http::async_read(self->stream_, self->buffer_, *parser,
                         [self, parser](beast::error_code body_error, std::size_t) {
                           self->on_read(body_error, *parser);
                         });
      });
}

RequestLimits HttpSession::limits() const {
  return RequestLimits{services_.options.max_header_bytes, services_.options.max_body_bytes};
}

void HttpSession::on_read(beast::error_code error, Parser& parser) {
  if (!error) {
    on_request(parser.release());
    return;
  }
  // A request not read in full is never answered as if it were valid: 431, 413 or 400,
  // then the connection closes (RFC 9112 §6.3: its framing cannot be trusted).
  if (auto refusal = read_refusal(error)) {
    spdlog::debug("http: refused a request: {}", error.message());
    write(std::move(*refusal));
    return;
  }
  if (error == http::error::end_of_stream || error == beast::error::timeout) {
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, error);
    return;
  }
  spdlog::debug("http: read failed: {}", error.message());
}

void HttpSession::on_request(Request request) {
  if (beast::websocket::is_upgrade(request) && is_chat_target(request.target())) {
    if (auto refusal = validate_upgrade(request)) {
      write(std::move(*refusal));
      return;
    }
    if (!origin_allowed(request)) {
      write(json_response(http::status::forbidden,
                          error_body("origin_not_allowed", "Origin is not in ALLOWED_ORIGINS"),
                          request.version(), false));
      return;
    }
    if (services_.draining.load(std::memory_order_relaxed)) {
      write(json_response(http::status::service_unavailable,
                          error_body("shutting_down", "server is shutting down"), request.version(),
                          false));
      return;
    }
    std::make_shared<websocket::Session>(stream_.release_socket(), services_)
        ->start(std::move(request));
    return;
  }
  if (RestApi::handles(request.target())) {
    RestApi::handle(
        services_, stream_.get_executor(), request,
        [self = shared_from_this()](Response response) { self->write(std::move(response)); },
        [self = shared_from_this()](Response head, RestApi::NextPiece next) {
          self->write_streamed(std::move(head), std::move(next));
        });
    return;
  }
  Response response = route(request);
  if (request.method() == http::verb::head) {
    // Same headers as GET (Content-Length included), no body.
    response.body().clear();
  }
  write(std::move(response));
}

HttpSession::Response HttpSession::route(const Request& request) const {
  const std::string_view target = request.target();
  const std::string_view path = target.substr(0, target.find('?'));
  const unsigned version = request.version();
  const bool keep_alive = request.keep_alive();
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    return json_response(http::status::method_not_allowed,
                         error_body("method_not_allowed", "only GET is served here"), version,
                         keep_alive);
  }
  if (path == "/healthz") {
    return json_response(http::status::ok, R"({"status":"ok"})", version, keep_alive);
  }
  if (path == "/metrics") {
    Response response(http::status::ok, version);
    response.set(http::field::server, "chatd/" CHATD_VERSION);
    response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    response.keep_alive(keep_alive);
    response.body() = services_.render_metrics();
    response.prepare_payload();
    return response;
  }
  if (path == "/readyz") {
    const bool store_ready = services_.store.ready();
    const bool draining = services_.draining.load(std::memory_order_relaxed);
    const std::string_view users = services_.users_state();
    const bool ready = store_ready && !draining && users != "unavailable";
    // Redis being down does not make an instance unready: it still serves its
    // own connections, and catches up from the store when Redis is back.
    boost::json::object body{{"status", ready ? "ready" : "not_ready"},
                             {"store", store_ready ? "ok" : "unavailable"},
                             {"user_search", users},
                             {"redis", services_.fanout.state()},
                             {"draining", draining}};
    return json_response(ready ? http::status::ok : http::status::service_unavailable,
                         boost::json::serialize(body), version, keep_alive);
  }
  if (const auto asset = find_web_asset(path)) {
    return web_response(*asset, version, keep_alive);
  }
  if (is_chat_target(target)) {
    return json_response(http::status::upgrade_required,
                         error_body("websocket_required", "this endpoint takes WebSocket upgrades"),
                         version, keep_alive);
  }
  return json_response(http::status::not_found, error_body("not_found", "no such endpoint"),
                       version, keep_alive);
}

HttpSession::Response HttpSession::web_response(const WebAsset& asset, unsigned version,
                                                bool keep_alive) {
  Response response(http::status::ok, version);
  response.set(http::field::server, "chatd/" CHATD_VERSION);
  response.set(http::field::content_type, web_content_type(asset.path));
  // The page is part of the binary: revalidating costs one small request, and an
  // upgraded chatd is never served with an old page.
  response.set(http::field::cache_control, "no-cache");
  // Only the page's own files, and WebSockets to the same host; no inline script.
  response.set("Content-Security-Policy",
               "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
  response.set("X-Content-Type-Options", "nosniff");
  response.set("Referrer-Policy", "no-referrer");
  response.keep_alive(keep_alive);
  response.body() = asset.body;
  response.prepare_payload();
  return response;
}

bool HttpSession::origin_allowed(const Request& request) const {
  const auto& allowed = services_.options.allowed_origins;
  if (allowed.empty()) return true;
  const auto origin = request.find(http::field::origin);
  // Clients that are not browsers send no Origin; browsers always do.
  if (origin == request.end()) return true;
  // Scheme and host are case-insensitive (RFC 6454); the allowed list is lower case.
  std::string value(origin->value());
  std::transform(value.begin(), value.end(), value.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::find(allowed.begin(), allowed.end(), value) != allowed.end() ||
         std::find(allowed.begin(), allowed.end(), "*") != allowed.end();
}

void HttpSession::write(Response response) {
  auto shared = std::make_shared<Response>(std::move(response));
  http::async_write(
      stream_, *shared, [self = shared_from_this(), shared](beast::error_code error, std::size_t) {
        if (error) return;
        if (!shared->keep_alive()) {
          self->stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, error);
          return;
        }
        self->read_request();
      });
}

// A streamed answer: the head, then one chunk per piece, each asked for once
// the one before it is written, so the producer runs at the client's pace and
// holds one piece at a time. Each write gets the idle timeout afresh: a
// client that stops reading is dropped after it, as any other.
void HttpSession::write_streamed(Response head, RestApi::NextPiece next) {
  auto header = std::make_shared<http::response<http::empty_body>>(head.result(), head.version());
  for (const auto& field : head) {
    if (field.name() == http::field::content_length) continue;  // chunked instead
    header->set(field.name_string(), field.value());
  }
  header->keep_alive(head.keep_alive());
  header->chunked(true);
  auto serializer = std::make_shared<http::response_serializer<http::empty_body>>(*header);
  stream_.expires_after(services_.options.idle_timeout);
  http::async_write_header(stream_, *serializer,
                           [self = shared_from_this(), header, serializer, next = std::move(next)](
                               beast::error_code error, std::size_t) {
                             if (!error) self->write_piece(next, header->keep_alive());
                           });
}

void HttpSession::write_piece(RestApi::NextPiece next, bool keep_alive) {
  next(asio::bind_executor(stream_.get_executor(), [self = shared_from_this(), next,
                                                    keep_alive](std::optional<std::string> piece) {
    beast::error_code ignored;
    if (!piece) {  // failed mid-body: no last chunk, so the client cannot take it as whole
      self->stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
      return;
    }
    self->stream_.expires_after(self->services_.options.idle_timeout);
    if (piece->empty()) {
      auto last = std::make_shared<http::chunk_last<>>();
      asio::async_write(
          self->stream_, *last, [self, last, keep_alive](beast::error_code error, std::size_t) {
            if (error) return;
            if (!keep_alive) {
              self->stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, error);
              return;
            }
            self->read_request();
          });
      return;
    }
    auto body = std::make_shared<std::string>(std::move(*piece));
    asio::async_write(self->stream_, http::make_chunk(asio::buffer(*body)),
                      [self, body, next, keep_alive](beast::error_code error, std::size_t) {
                        if (!error) self->write_piece(next, keep_alive);
                      });
  }));
}

}  // namespace chatd::net
