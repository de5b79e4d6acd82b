#include "net/rest_api.h"

#include <boost/asio/bind_executor.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <memory>
#include <optional>
#include <variant>

#include "auth/chat_identity.h"
#include "auth/token_verifier.h"
#include "chat/chat_key.h"
#include "chat/frames_v2.h"
#include "chat/username.h"
#include "metrics/chatd_metrics.h"
#include "net/admin_api.h"
#include "net/caller_rate_limits.h"
#include "net/json_response.h"
#include "net/store_replies.h"
#include "store/store.h"
#include "users/chat_users.h"

namespace chatd::net {
namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
namespace urls = boost::urls;

namespace {

using Response = RestApi::Response;

using Call = RestApi::Call;

/// `/api/chats/{user1}/{user2}/messages`, percent-decoded, with its query.
struct MessagesPath {
  std::string user1;
  std::string user2;
  urls::url_view url;
};

/// The token of a request: `?token=` or `Authorization: Bearer`; nullopt without SECRET_KEY.
std::optional<std::string> request_token(const Services& services, const RestApi::Request& request,
                                         const urls::url_view& url) {
  if (services.tokens == nullptr) return std::nullopt;
  std::string query_token;
  const auto params = url.params();
  if (const auto token = params.find("token"); token != params.end()) {
    query_token = (*token).value;
  }
  return auth::extract_token(query_token, request[http::field::authorization], std::string_view{});
}

/// The caller of the chat of `user1` and `user2` (as for a WebSocket), or nullopt
/// with the refusal sent (401, 403 with `forbidden_message`).
std::optional<std::string> identify(const Services& services, const RestApi::Request& request,
                                    const urls::url_view& url, std::string_view user1,
                                    std::string_view user2, const Call& call,
                                    std::string_view forbidden_message) {
  auto identity =
      auth::identify_in_chat(services.tokens, request_token(services, request, url), user1, user2);
  switch (identity.refusal) {
    case auth::ChatIdentity::Refusal::unauthorized:
      call.error(http::status::unauthorized, "unauthorized", identity.reason);
      return std::nullopt;
    case auth::ChatIdentity::Refusal::forbidden:
      call.error(http::status::forbidden, "forbidden", std::string(forbidden_message));
      return std::nullopt;
    case auth::ChatIdentity::Refusal::none:
      break;
  }
  return std::move(identity.user);
}

/// GET /api/users/{user}/conversations: the user's chats, newest activity first.
void get_conversations(const Services& services, asio::any_io_executor executor,
                       const RestApi::Request& request, const urls::url_view& url, std::string user,
                       const Call& call) {
  // A token reads only its own conversations: the "chat" of the user alone.
  if (!identify(services, request, url, user, user, call,
                "a token reads only its own conversations")) {
    return;
  }
  bool bad = false;
  const auto limit = query_number(url, "limit", bad);
  if (bad) {
    call.error(http::status::bad_request, "invalid_query", "limit must be a non-negative integer");
    return;
  }
  constexpr std::uint64_t kDefault = 50;
  services.store.conversations(
      user, std::min<std::uint64_t>(limit.value_or(kDefault), chat::v2::kMaxHistoryPage),
      asio::bind_executor(executor, [call, user](store::ConversationList list) {
        if (list.error != store::StoreError::none) {
          const StoreReply answer = store_reply(list.error, "try again");
          call.error(http::status::service_unavailable, answer.code, answer.message);
          return;
        }
        json::array conversations;
        for (const auto& conversation : list.conversations) {
          conversations.emplace_back(
              json::object{{"chat", conversation.chat.str()},
                           {"peer", conversation.chat.peer_of(user)},
                           {"last_message", chat::message_object(*conversation.last)},
                           {"read_seq", conversation.read_seq},
                           {"unread", conversation.unread}});
        }
        call.reply(http::status::ok,
                   json::serialize(
                       json::object{{"user", user}, {"conversations", std::move(conversations)}}));
      }));
}

void get_messages(const Services& services, asio::any_io_executor executor,
                  const MessagesPath& path, const Call& call) {
  bool bad = false;
  store::HistoryQuery query;
  query.before_seq = query_number(path.url, "before", bad).value_or(0);
  const auto after = query_number(path.url, "after", bad);
  const auto limit = query_number(path.url, "limit", bad);
  if (bad) {
    call.error(http::status::bad_request, "invalid_query",
               "before, after and limit must be non-negative integers");
    return;
  }
  query.after_seq = after.value_or(0);
  query.oldest_first = after.has_value();  // after: the oldest page past it; else the newest
  query.limit = std::min<std::uint64_t>(limit.value_or(services.options.history_limit),
                                        chat::v2::kMaxHistoryPage);
  const auto chat = chat::ChatKey::of(path.user1, path.user2);
  services.store.history(
      chat, query, asio::bind_executor(executor, [call, chat](store::HistoryPage page) {
        if (page.error != store::StoreError::none) {
          const StoreReply answer = store_reply(page.error, "try again");
          call.error(http::status::service_unavailable, answer.code, answer.message);
          return;
        }
        json::array messages;
        for (const auto& message : page.messages) {
          messages.emplace_back(chat::message_object(*message));
        }
        call.reply(http::status::ok, json::serialize(json::object{{"chat", chat.str()},
                                                                  {"messages", std::move(messages)},
                                                                  {"has_more", page.has_more}}));
      }));
}

/// The HTTP status of a change the chat's rules refused.
http::status refusal_status(store::Refusal refusal) {
  switch (refusal) {
    case store::Refusal::blocked:
    case store::Refusal::not_your_message:
      return http::status::forbidden;
    case store::Refusal::not_found:
      return http::status::not_found;
    case store::Refusal::deleted:
    case store::Refusal::edit_window_passed:
      return http::status::conflict;
    case store::Refusal::none:
      break;
  }
  return http::status::internal_server_error;
}

/// Verifies both users of `pending`'s chat, appends it, and answers with
/// `answer(result)` once committed (errors answered here).
template <typename Answer>
void verify_and_append(const Services& services, asio::any_io_executor executor,
                       chat::PendingMessage pending, const Call& call, Answer answer,
                       std::string_view consequence = "nothing changed", bool a_message = false) {
  auto shared = std::make_shared<chat::PendingMessage>(std::move(pending));
  const std::string first = shared->chat.first();
  const std::string second = shared->chat.second();
  users::verify_chat_users(
      services.users, first, second,
      asio::bind_executor(executor, [&services, executor, call, shared, answer, consequence,
                                     a_message](users::ChatUsers users) {
        switch (users.status) {
          case users::UserStatus::unavailable:
            call.error(http::status::service_unavailable, "user_search_unavailable",
                       "user-search service unavailable; try again");
            return;
          case users::UserStatus::not_found:
            call.error(http::status::not_found, "unknown_user", "unknown user: " + users.unknown);
            return;
          case users::UserStatus::found:
            break;
        }
        if (a_message) services.metrics.messages_received.inc();
        services.store.append(
            std::move(*shared),
            asio::bind_executor(executor, [call, answer, consequence](store::AppendResult result) {
              if (result.error != store::StoreError::none) {
                const StoreReply reply = store_reply(result.error, consequence);
                call.error(http::status::service_unavailable, reply.code, reply.message);
              } else if (result.refusal != store::Refusal::none) {
                call.error(refusal_status(result.refusal), store::to_string(result.refusal),
                           refusal_message(result.refusal));
              } else {
                answer(result);
              }
            }));
      }));
}

void post_message(const Services& services, asio::any_io_executor executor,
                  const RestApi::Request& request, const MessagesPath& path, std::string me,
                  const Call& call) {
  const chat::FrameLimits limits{services.options.max_text_bytes};
  auto parsed = chat::v2::parse_send_body(request.body(), limits);
  if (auto* refusal = std::get_if<chat::v2::Refusal>(&parsed)) {
    services.metrics.rejected(refusal->error.code);
    call.error(http::status::bad_request, refusal->error.code, refusal->error.message);
    return;
  }
  if (!services.rest_limits.try_take(me)) {
    services.metrics.rejected("rate_limited");
    call.error(http::status::too_many_requests, "rate_limited",
               "too many messages; message not stored, slow down (MESSAGES_PER_SECOND)");
    return;
  }
  auto send = std::get<chat::v2::Send>(std::move(parsed));
  // Both users must exist, as for a WebSocket; the cache answers most lookups.
  verify_and_append(
      services, std::move(executor),
      chat::PendingMessage{chat::ChatKey::of(path.user1, path.user2), std::move(me),
                           std::move(send.text), std::move(send.client_id), 0,
                           std::chrono::steady_clock::now()},
      call,
      [call](const store::AppendResult& result) {
        call.reply(result.duplicate ? http::status::ok : http::status::created,
                   chat::v2::ack_frame(*result.message, result.duplicate));
      },
      "message not stored", true);
}

/// PATCH or DELETE /api/chats/{user1}/{user2}/messages/{seq or id}.
void change_message(const Services& services, asio::any_io_executor executor,
                    const RestApi::Request& request, const MessagesPath& path,
                    const std::string& ref, std::string me, const Call& call) {
  const bool edit = request.method() == http::verb::patch;
  chat::v2::Change change;
  change.kind = edit ? chat::EntryKind::edit : chat::EntryKind::remove;
  if (edit) {
    const chat::FrameLimits limits{services.options.max_text_bytes};
    auto parsed = chat::v2::parse_edit_body(request.body(), limits);
    if (auto* refusal = std::get_if<chat::v2::Refusal>(&parsed)) {
      services.metrics.rejected(refusal->error.code);
      call.error(http::status::bad_request, refusal->error.code, refusal->error.message);
      return;
    }
    change = std::get<chat::v2::Change>(std::move(parsed));
  } else {
    const auto params = path.url.params();
    if (const auto id = params.find("client_id"); id != params.end()) {
      change.client_id = (*id).value;
      if (change.client_id.empty() || change.client_id.size() > chat::v2::kMaxClientIdBytes) {
        call.error(http::status::bad_request, "invalid_client_id",
                   "client_id must be 1 to 128 bytes");
        return;
      }
    }
  }
  std::uint64_t seq = 0;
  const auto [end, error] = std::from_chars(ref.data(), ref.data() + ref.size(), seq);
  const bool is_seq = error == std::errc() && end == ref.data() + ref.size() && seq > 0;
  const bool is_id =
      ref.size() == 24 && ref.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!is_seq && !is_id) {
    call.error(http::status::bad_request, "invalid_target",
               "name the message by its seq (a positive integer) or its id (24 hex digits)");
    return;
  }
  if (!services.rest_limits.try_take(me)) {
    services.metrics.rejected("rate_limited");
    call.error(http::status::too_many_requests, "rate_limited",
               "too many changes; nothing changed, slow down (MESSAGES_PER_SECOND)");
    return;
  }
  chat::PendingMessage pending{chat::ChatKey::of(path.user1, path.user2),
                               std::move(me),
                               std::move(change.text),
                               std::move(change.client_id),
                               0,
                               std::chrono::steady_clock::now()};
  pending.kind = change.kind;
  // 24 hex digits never parse as a seq (they overflow 64 bits when all are digits).
  if (is_seq) {
    pending.target = seq;
  } else {
    pending.target_id = ref;
  }
  pending.edit_window_ms = services.options.edit_window.count();
  verify_and_append(services, std::move(executor), std::move(pending), call,
                    [call](const store::AppendResult& result) {
                      call.reply(http::status::ok,
                                 chat::v2::ack_frame(*result.message, result.duplicate));
                    });
}

/// GET /api/users/{user}/blocks; PUT or DELETE /api/users/{user}/blocks/{other}.
void handle_blocks(const Services& services, asio::any_io_executor executor,
                   const RestApi::Request& request, const urls::url_view& url, std::string user,
                   std::optional<std::string> other, const Call& call) {
  if (!identify(services, request, url, user, user, call, "a token changes only its own blocks")) {
    return;
  }
  if (!other) {
    if (request.method() != http::verb::get) {
      call.error(http::status::method_not_allowed, "method_not_allowed", "GET only");
      return;
    }
    services.store.blocks(
        user, asio::bind_executor(executor, [call, user](store::BlockList list) {
          if (list.error != store::StoreError::none) {
            const StoreReply answer = store_reply(list.error, "try again");
            call.error(http::status::service_unavailable, answer.code, answer.message);
            return;
          }
          json::array users;
          for (auto& blocked : list.users) users.emplace_back(std::move(blocked));
          call.reply(http::status::ok,
                     json::serialize(json::object{{"user", user}, {"blocks", std::move(users)}}));
        }));
    return;
  }
  const bool block = request.method() == http::verb::put;
  if (!block && request.method() != http::verb::delete_) {
    call.error(http::status::method_not_allowed, "method_not_allowed",
               "PUT to block, DELETE to unblock");
    return;
  }
  if (auto error = chat::validate_username(*other)) {
    call.error(http::status::bad_request, "invalid_username", *error);
    return;
  }
  if (*other == user) {
    call.error(http::status::bad_request, "invalid_username", "a user cannot block themselves");
    return;
  }
  chat::PendingMessage pending{chat::ChatKey::of(user, *other), user, {}, {}, 0,
                               std::chrono::steady_clock::now()};
  pending.kind = block ? chat::EntryKind::block : chat::EntryKind::unblock;
  verify_and_append(services, std::move(executor), std::move(pending), call,
                    [call, user, other = *other, block](const store::AppendResult&) {
                      call.reply(http::status::ok,
                                 json::serialize(json::object{
                                     {"user", user}, {"blocked_user", other}, {"blocked", block}}));
                    });
}

}  // namespace

std::optional<std::uint64_t> query_number(const urls::url_view& url, std::string_view key,
                                          bool& bad) {
  const auto params = url.params();
  const auto found = params.find(key);
  if (found == params.end()) return std::nullopt;
  const std::string value = (*found).value;
  std::uint64_t number = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (value.empty() || error != std::errc() || end != value.data() + value.size()) bad = true;
  return number;
}

void RestApi::Call::reply(http::status status, std::string body) const {
  done(json_response(status, std::move(body), version, keep_alive));
}

void RestApi::Call::error(http::status status, std::string_view code,
                          std::string_view message) const {
  reply(status, error_body(code, message));
}

void RestApi::handle(const Services& services, asio::any_io_executor executor,
                     const Request& request, Done done, Stream stream) {
  if (AdminApi::handles(request.target())) {
    AdminApi::handle(services, std::move(executor), request, std::move(done), std::move(stream));
    return;
  }
  const Call call{request.version(), request.keep_alive(), std::move(done)};
  const auto parsed = urls::parse_origin_form(request.target());
  if (!parsed) {
    call.error(http::status::bad_request, "invalid_path", "malformed request target");
    return;
  }
  const auto segments = parsed->encoded_segments();
  std::vector<std::string> parts;
  for (const auto& segment : segments) parts.push_back(segment.decode());
  if ((parts.size() == 4 || parts.size() == 5) && parts[0] == "api" && parts[1] == "users" &&
      parts[3] == "blocks") {
    if (auto error = chat::validate_username(parts[2])) {
      call.error(http::status::bad_request, "invalid_username", *error);
      return;
    }
    std::optional<std::string> other;
    if (parts.size() == 5) other = parts[4];
    handle_blocks(services, std::move(executor), request, *parsed, parts[2], std::move(other),
                  call);
    return;
  }
  if (parts.size() == 4 && parts[0] == "api" && parts[1] == "users" &&
      parts[3] == "conversations") {
    if (auto error = chat::validate_username(parts[2])) {
      call.error(http::status::bad_request, "invalid_username", *error);
    } else if (request.method() != http::verb::get) {
      call.error(http::status::method_not_allowed, "method_not_allowed", "GET only");
    } else {
      get_conversations(services, std::move(executor), request, *parsed, parts[2], call);
    }
    return;
  }
  const bool one_message = parts.size() == 6;
  if ((parts.size() != 5 && !one_message) || parts[0] != "api" || parts[1] != "chats" ||
      parts[4] != "messages") {
    call.error(http::status::not_found, "not_found",
               "no such endpoint; see /api/chats/{user1}/{user2}/messages and "
               "/api/users/{user}/conversations");
    return;
  }
  MessagesPath path{parts[2], parts[3], *parsed};
  for (const std::string* user : {&path.user1, &path.user2}) {
    if (auto error = chat::validate_username(*user)) {
      call.error(http::status::bad_request, "invalid_username", *error);
      return;
    }
  }
  if (services.draining.load(std::memory_order_relaxed)) {
    call.error(http::status::service_unavailable, "shutting_down", "server is shutting down");
    return;
  }
  if (one_message) {
    if (request.method() != http::verb::patch && request.method() != http::verb::delete_) {
      call.error(http::status::method_not_allowed, "method_not_allowed",
                 "PATCH to edit the message, DELETE to delete it");
      return;
    }
    const auto me = identify(services, request, path.url, path.user1, path.user2, call,
                             "token subject is not a user of this chat");
    if (!me) return;
    change_message(services, std::move(executor), request, path, parts[5], *me, call);
    return;
  }
  const bool is_get = request.method() == http::verb::get;
  if (!is_get && request.method() != http::verb::post) {
    call.error(http::status::method_not_allowed, "method_not_allowed",
               "GET to read the messages, POST to send one");
    return;
  }
  const auto me = identify(services, request, path.url, path.user1, path.user2, call,
                           "token subject is not a user of this chat");
  if (!me) return;
  if (is_get) {
    get_messages(services, std::move(executor), path, call);
  } else {
    post_message(services, std::move(executor), request, path, *me, call);
  }
}

}  // namespace chatd::net
