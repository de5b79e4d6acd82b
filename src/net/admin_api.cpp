#include "net/admin_api.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include "chat/message.h"
#include "net/json_response.h"
#include "webhooks/dispatcher.h"

namespace chatd::net {
namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace urls = boost::urls;

namespace {

constexpr std::size_t kDefaultLimit = 100;
constexpr std::size_t kMaxLimit = 1000;

using Answer = RestApi::Call;

json::object failed_object(const store::FailedEvent& event) {
  boost::system::error_code error;
  json::value body = json::parse(event.body, error);
  return json::object{{"id", event.id},
                      {"type", event.type},
                      {"chat", event.chat.str()},
                      {"seq", event.seq},
                      {"attempts", event.attempts},
                      {"last_error", event.last_error},
                      {"failed_ts", chat::format_timestamp(event.failed_ms)},
                      {"event", error ? json::value(event.body) : std::move(body)}};
}

void list_failed(const Services& services, asio::any_io_executor executor,
                 const urls::url_view& url, const Answer& answer) {
  bool bad = false;
  const std::uint64_t limit = query_number(url, "limit", bad).value_or(kDefaultLimit);
  if (bad || limit == 0 || limit > kMaxLimit) {
    answer.error(http::status::bad_request, "invalid_query",
                 "limit must be a whole number from 1 to " + std::to_string(kMaxLimit));
    return;
  }
  services.webhooks->list_failed(
      limit + 1, [executor, answer, limit](webhooks::Dispatcher::FailedList events) {
        asio::post(executor, [answer, limit, events = std::move(events)] {
          if (!events) {
            answer.error(http::status::service_unavailable, "store_unavailable",
                         "the store failed; try again");
            return;
          }
          json::array list;
          for (std::size_t i = 0; i < events->size() && i < limit; ++i) {
            list.emplace_back(failed_object((*events)[i]));
          }
          answer.reply(http::status::ok,
                       json::serialize(json::object{{"events", std::move(list)},
                                                    {"has_more", events->size() > limit}}));
        });
      });
}

void retry_failed(const Services& services, asio::any_io_executor executor, std::string id,
                  const Answer& answer) {
  services.webhooks->retry_failed(id, [executor, answer, id](std::optional<bool> retried) {
    asio::post(executor, [answer, id, retried] {
      if (!retried) {
        answer.error(http::status::service_unavailable, "store_unavailable",
                     "the store failed; try again");
      } else if (!*retried) {
        answer.error(http::status::not_found, "not_found", "no failed webhook event " + id);
      } else {
        spdlog::info("admin: webhook event {} queued to be sent again", id);
        answer.reply(http::status::accepted,
                     json::serialize(json::object{{"id", id}, {"state", "pending"}}));
      }
    });
  });
}

}  // namespace

bool bearer_matches(std::string_view authorization, std::string_view token) {
  constexpr std::string_view kScheme = "Bearer ";
  if (authorization.size() < kScheme.size()) return false;
  std::string scheme(authorization.substr(0, kScheme.size()));
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::string_view given = authorization.substr(kScheme.size());
  unsigned char given_hash[SHA256_DIGEST_LENGTH];
  unsigned char token_hash[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(given.data()), given.size(), given_hash);
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), token_hash);
  const bool same = CRYPTO_memcmp(given_hash, token_hash, SHA256_DIGEST_LENGTH) == 0;
  return same && scheme == "bearer " && !token.empty();
}

void AdminApi::handle(const Services& services, asio::any_io_executor executor,
                      const RestApi::Request& request, RestApi::Done done) {
  const Answer answer{request.version(), request.keep_alive(), std::move(done)};
  if (services.admin_token.empty()) {
    answer.error(http::status::not_found, "not_found",
                 "the admin API is off (ADMIN_TOKEN is not set)");
    return;
  }
  if (!bearer_matches(request[http::field::authorization], services.admin_token)) {
    auto response = json_response(http::status::unauthorized,
                                  error_body("unauthorized", "Authorization: Bearer <ADMIN_TOKEN>"),
                                  request.version(), request.keep_alive());
    response.set(http::field::www_authenticate, "Bearer");
    answer.done(std::move(response));
    return;
  }
  const auto parsed = urls::parse_origin_form(request.target());
  if (!parsed) {
    answer.error(http::status::bad_request, "invalid_path", "malformed request target");
    return;
  }
  std::vector<std::string> parts;
  for (const auto& segment : parsed->encoded_segments()) parts.push_back(segment.decode());
  const bool failed_list = parts.size() == 4 && parts[2] == "webhooks" && parts[3] == "failed";
  const bool retry =
      parts.size() == 6 && parts[2] == "webhooks" && parts[3] == "failed" && parts[5] == "retry";
  if (!failed_list && !retry) {
    answer.error(http::status::not_found, "not_found",
                 "no such endpoint; see /api/admin/webhooks/failed");
    return;
  }
  if (services.webhooks == nullptr) {
    answer.error(http::status::not_found, "webhooks_off", "webhooks are off (WEBHOOK_URL)");
    return;
  }
  if (failed_list) {
    if (request.method() != http::verb::get) {
      answer.error(http::status::method_not_allowed, "method_not_allowed", "GET only");
      return;
    }
    list_failed(services, std::move(executor), *parsed, answer);
    return;
  }
  if (request.method() != http::verb::post) {
    answer.error(http::status::method_not_allowed, "method_not_allowed", "POST only");
    return;
  }
  retry_failed(services, std::move(executor), parts[4], answer);
}

}  // namespace chatd::net
