#include "webhooks/webhook_options.h"

#include "users/search_endpoint.h"

namespace chatd::webhooks {

std::optional<std::string> parse_events(std::string_view list, WebhookOptions& options) {
  options.message_events = 0;
  options.read_events = false;
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string_view name = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (name == "message.offline") {
      options.message_events |= store::kHookOffline;
    } else if (name == "message.created") {
      options.message_events |= store::kHookCreated;
    } else if (name == "message.read") {
      options.read_events = true;
    } else if (!name.empty()) {
      return std::string(name);
    }
  }
  return std::nullopt;
}

std::optional<std::string> validate(const WebhookOptions& options) {
  if (!options.enabled()) return std::nullopt;
  users::SearchEndpoint endpoint;
  if (auto problem = users::SearchEndpoint::parse(options.url, endpoint)) {
    return "WEBHOOK_URL: " + *problem;
  }
  if (options.secret.size() < kMinSecretBytes) {
    return "WEBHOOK_SECRET: must be set, at least " + std::to_string(kMinSecretBytes) +
           " bytes, when WEBHOOK_URL is set (receivers check the signature made with it)";
  }
  if (options.message_events == 0 && !options.read_events) {
    return "WEBHOOK_EVENTS: names no event (message.offline, message.created, message.read)";
  }
  if (options.backoff_max < options.backoff_min) {
    return "WEBHOOK_BACKOFF_MAX_MS: must not be below WEBHOOK_BACKOFF_MIN_MS";
  }
  return std::nullopt;
}

}  // namespace chatd::webhooks
