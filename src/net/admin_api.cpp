#include "net/admin_api.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <future>

#include "chat/frames.h"
#include "chat/message.h"
#include "chat/username.h"
#include "metrics/chatd_metrics.h"
#include "net/json_response.h"
#include "store/maintainer.h"
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

/// Rows an erasure changes per statement: a chat's write lock is held that long.
constexpr std::size_t kEraseBatch = 500;
/// How long an erasure waits for the store to commit one chat's `erased` change.
constexpr std::chrono::seconds kEraseEntryTimeout{30};
constexpr std::size_t kChatsPerRead = 100;
constexpr std::size_t kDefaultExportLimit = 1000;
constexpr std::size_t kMaxExportLimit = 5000;

/// POST /api/admin/users/{user}/erase: every text the user sent, gone.
void erase_user(const Services& services, asio::any_io_executor executor, std::string user,
                const Answer& answer) {
  store::Store& store = services.store;
  metrics::ChatdMetrics& metrics = services.metrics;
  services.maintainer->post([&store, &metrics, executor, answer,
                             user](store::Maintenance* maintenance) {
    if (maintenance == nullptr) {
      asio::post(executor, [answer] {
        answer.error(http::status::service_unavailable, "store_unavailable",
                     "the store failed; try again");
      });
      return;
    }
    std::size_t chats = 0;
    std::size_t erased = 0;
    std::size_t edits = 0;
    std::size_t receipts = 0;
    try {
      std::string after;
      for (;;) {
        const auto page = maintenance->chats_of(user, after, kChatsPerRead);
        for (const auto& chat : page) {
          for (;;) {
            const store::EraseStep step = maintenance->erase(chat, user, kEraseBatch);
            if (step.empty()) break;
            erased += step.messages;
            edits += step.edits;
          }
          ++chats;
          // The chat's connections and resuming clients learn it in order.
          // Waited for, so that the answer comes after every chat was told
          // and no write of the erasure races the next one on the chat.
          chat::PendingMessage entry{chat, user, {}, {}, 0, std::chrono::steady_clock::now()};
          entry.kind = chat::EntryKind::erase;
          auto told = std::make_shared<std::promise<store::StoreError>>();
          auto result = told->get_future();
          store.append(std::move(entry),
                       [told](store::AppendResult appended) { told->set_value(appended.error); });
          if (result.wait_for(kEraseEntryTimeout) != std::future_status::ready ||
              result.get() != store::StoreError::none) {
            throw store::MaintenanceError("the erased change of " + chat.str() + " was not stored");
          }
        }
        if (page.size() < kChatsPerRead) break;
        after = page.back().str();
      }
      receipts = maintenance->forget_user(user);
    } catch (const store::MaintenanceError& error) {
      spdlog::error("admin: erasure of {} stopped after {} messages: {}", user, erased,
                    error.what());
      asio::post(executor, [answer] {
        answer.error(http::status::service_unavailable, "store_unavailable",
                     "the store failed; the erasure is partial, run it again");
      });
      return;
    }
    metrics.admin_erasures.inc();
    metrics.erased_messages.inc(erased);
    spdlog::info("admin audit: erased user {}: {} messages and {} edits in {} chats, {} receipts",
                 user, erased, edits, chats, receipts);
    asio::post(executor, [answer, user, chats, erased, edits, receipts] {
      answer.reply(http::status::ok, json::serialize(json::object{{"user", user},
                                                                  {"chats", chats},
                                                                  {"messages_erased", erased},
                                                                  {"edits_erased", edits},
                                                                  {"receipts_removed", receipts}}));
    });
  });
}

/// Messages a streamed export reads per piece: the most it holds at once.
constexpr std::size_t kStreamPiece = 500;

/// GET /api/admin/users/{user}/export, streamed: one JSON document,
/// `{"user":…,"chats":[{"chat":…,"peer":…,"messages":[…]},…]}`, written
/// piece by piece as the client reads it.
class ExportStream : public std::enable_shared_from_this<ExportStream> {
 public:
  ExportStream(store::Maintainer& maintainer, metrics::ChatdMetrics& metrics, std::string user)
      : maintainer_(maintainer), metrics_(metrics), user_(std::move(user)) {}

  /// RestApi::NextPiece: the next piece is made on the maintenance thread.
  void next(RestApi::Piece piece) {
    if (finished_) {
      piece(std::string());
      return;
    }
    maintainer_.post(
        [self = shared_from_this(), piece = std::move(piece)](store::Maintenance* maintenance) {
          if (maintenance == nullptr) {
            piece(std::nullopt);
            return;
          }
          try {
            piece(self->make_piece(*maintenance));
          } catch (const store::MaintenanceError& error) {
            spdlog::error("admin: export of {} failed after {} messages: {}", self->user_,
                          self->count_, error.what());
            piece(std::nullopt);
          }
        });
  }

 private:
  std::string make_piece(store::Maintenance& maintenance) {
    std::string out;
    if (!started_) {
      out = R"({"user":)" + json::serialize(json::value(user_)) + R"(,"chats":[)";
      started_ = true;
    }
    std::size_t in_piece = 0;
    while (in_piece < kStreamPiece) {
      if (!chat_) {
        if (index_ == keys_.size()) {
          keys_ = maintenance.chats_of(user_, listed_after_, kChatsPerRead);
          index_ = 0;
          if (keys_.empty()) {
            out += "]}";
            finish();
            return out;
          }
          listed_after_ = keys_.back().str();
        }
        chat_ = keys_[index_++];
        after_seq_ = 0;
        chat_open_ = false;
      }
      const std::size_t asked = kStreamPiece - in_piece;
      const auto messages = maintenance.messages(*chat_, after_seq_, asked);
      if (!messages.empty() && !chat_open_) {
        if (chats_ > 0) out += ',';
        out +=
            json::serialize(json::object{{"chat", chat_->str()}, {"peer", chat_->peer_of(user_)}});
        out.pop_back();  // the object stays open for its messages
        out += R"(,"messages":[)";
        chat_open_ = true;
        ++chats_;
      }
      for (std::size_t i = 0; i < messages.size(); ++i) {
        if (after_seq_ != 0 || i != 0) out += ',';
        out += json::serialize(chat::message_object(*messages[i]));
        after_seq_ = messages[i]->seq;
      }
      in_piece += messages.size();
      count_ += messages.size();
      if (messages.size() < asked) {  // the chat is done
        if (chat_open_) out += "]}";
        chat_.reset();
      }
    }
    return out;
  }

  void finish() {
    finished_ = true;
    metrics_.admin_exports.inc();
    metrics_.exported_messages.inc(count_);
    spdlog::info("admin audit: exported user {}: {} messages in {} chats (streamed)", user_, count_,
                 chats_);
  }

  store::Maintainer& maintainer_;
  metrics::ChatdMetrics& metrics_;
  const std::string user_;
  bool started_ = false;
  bool finished_ = false;
  std::vector<chat::ChatKey> keys_;
  std::size_t index_ = 0;
  std::string listed_after_;
  std::optional<chat::ChatKey> chat_;
  std::uint64_t after_seq_ = 0;
  bool chat_open_ = false;
  std::size_t chats_ = 0;
  std::size_t count_ = 0;
};

/// GET /api/admin/users/{user}/export?cursor=…&limit=…: one page of
/// everything the user sent and received, in chat-key then seq order; `next`
/// is the cursor of the following page (null: the last page).
void export_user(const Services& services, asio::any_io_executor executor, std::string user,
                 const urls::url_view& url, const Answer& answer) {
  bool bad = false;
  const std::uint64_t limit = query_number(url, "limit", bad).value_or(kDefaultExportLimit);
  if (bad || limit == 0 || limit > kMaxExportLimit) {
    answer.error(http::status::bad_request, "invalid_query",
                 "limit must be a whole number from 1 to " + std::to_string(kMaxExportLimit));
    return;
  }
  // The cursor: "<chat key> <seq>", the last message of the page before.
  std::string chat_after;
  std::uint64_t seq_after = 0;
  const auto params = url.params();
  if (const auto found = params.find("cursor"); found != params.end()) {
    const std::string cursor = (*found).value;
    const auto space = cursor.rfind(' ');
    const auto parsed =
        space == std::string::npos ? std::nullopt : chat::ChatKey::parse(cursor.substr(0, space));
    const char* digits = cursor.data() + (space == std::string::npos ? 0 : space + 1);
    const auto [end, error] = std::from_chars(digits, cursor.data() + cursor.size(), seq_after);
    if (!parsed || !parsed->has_participant(user) || error != std::errc() ||
        end != cursor.data() + cursor.size()) {
      answer.error(http::status::bad_request, "invalid_query",
                   "cursor must be the `next` of the page before");
      return;
    }
    chat_after = parsed->str();
  }
  metrics::ChatdMetrics& metrics = services.metrics;
  services.maintainer->post([&metrics, executor, answer, user, limit, chat_after,
                             seq_after](store::Maintenance* maintenance) mutable {
    if (maintenance == nullptr) {
      asio::post(executor, [answer] {
        answer.error(http::status::service_unavailable, "store_unavailable",
                     "the store failed; try again");
      });
      return;
    }
    json::array chats;
    std::size_t count = 0;
    std::optional<std::string> next;
    try {
      // The chat the cursor is in first, then those after it.
      std::vector<chat::ChatKey> keys;
      if (!chat_after.empty()) keys.push_back(*chat::ChatKey::parse(chat_after));
      std::string listed_after = chat_after;
      std::size_t index = 0;
      while (count < limit) {
        if (index == keys.size()) {
          keys = maintenance->chats_of(user, listed_after, kChatsPerRead);
          index = 0;
          if (keys.empty()) break;
          listed_after = keys.back().str();
        }
        const chat::ChatKey& chat = keys[index++];
        const bool resumed = chat.str() == chat_after;
        const auto messages = maintenance->messages(chat, resumed ? seq_after : 0, limit - count);
        if (messages.empty()) continue;
        json::array list;
        for (const auto& message : messages) list.emplace_back(chat::message_object(*message));
        count += messages.size();
        if (count >= limit) {
          next = chat.str() + ' ' + std::to_string(messages.back()->seq);
        }
        chats.emplace_back(json::object{
            {"chat", chat.str()}, {"peer", chat.peer_of(user)}, {"messages", std::move(list)}});
      }
    } catch (const store::MaintenanceError& error) {
      spdlog::error("admin: export of {} failed: {}", user, error.what());
      asio::post(executor, [answer] {
        answer.error(http::status::service_unavailable, "store_unavailable",
                     "the store failed; try again");
      });
      return;
    }
    metrics.admin_exports.inc();
    metrics.exported_messages.inc(count);
    spdlog::info("admin audit: exported user {}: {} messages", user, count);
    json::object page{{"user", user}, {"chats", std::move(chats)}};
    page.emplace("next", next ? json::value(*next) : json::value(nullptr));
    asio::post(executor,
               [answer, body = json::serialize(page)] { answer.reply(http::status::ok, body); });
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
                      const RestApi::Request& request, RestApi::Done done, RestApi::Stream stream) {
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
  if (parts.size() == 5 && parts[2] == "users" && (parts[4] == "erase" || parts[4] == "export")) {
    if (auto error = chat::validate_username(parts[3])) {
      answer.error(http::status::bad_request, "invalid_username", *error);
      return;
    }
    const bool erase = parts[4] == "erase";
    if (request.method() != (erase ? http::verb::post : http::verb::get)) {
      answer.error(http::status::method_not_allowed, "method_not_allowed",
                   erase ? "POST only" : "GET only");
      return;
    }
    const auto params = parsed->params();
    const bool paged = params.contains("limit") || params.contains("cursor");
    if (erase) {
      erase_user(services, std::move(executor), parts[3], answer);
    } else if (!paged && stream) {
      auto exporter =
          std::make_shared<ExportStream>(*services.maintainer, services.metrics, parts[3]);
      RestApi::Response head =
          json_response(http::status::ok, "", request.version(), request.keep_alive());
      stream(std::move(head),
             [exporter](RestApi::Piece piece) { exporter->next(std::move(piece)); });
    } else {
      export_user(services, std::move(executor), parts[3], *parsed, answer);
    }
    return;
  }
  const bool failed_list = parts.size() == 4 && parts[2] == "webhooks" && parts[3] == "failed";
  const bool retry =
      parts.size() == 6 && parts[2] == "webhooks" && parts[3] == "failed" && parts[5] == "retry";
  if (!failed_list && !retry) {
    answer.error(http::status::not_found, "not_found",
                 "no such endpoint; see /api/admin/webhooks/failed and "
                 "/api/admin/users/{user}/erase, /api/admin/users/{user}/export");
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
