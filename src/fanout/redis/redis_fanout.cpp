#include "fanout/redis/redis_fanout.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <future>
#include <random>

#include "chat/frames_v2.h"
#include "metrics/registry.h"
#include "store/store.h"

namespace chatd::fanout::redis {
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr std::string_view kChannelPrefix = "chatd:chat:";
/// An instance whose publishing connection was down tells the others here;
/// they re-read their chats from the store (what it published meanwhile is lost).
constexpr std::string_view kResyncChannel = "chatd:resync";
/// Longest wait of a stand-in (a store copy of this instance's own commit) for
/// the commit thread's copy: a MongoDB batch with sequence conflicts between
/// instances is announced only when all of it is written, after several round trips.
constexpr std::chrono::seconds kStandInWait{15};
/// Longest wait for a subscription's confirmation before a chat is synced anyway.
constexpr std::chrono::milliseconds kSyncTimeout{1000};
/// Messages read per round of a fill.
constexpr std::size_t kFillPage = 500;

// KEYS[1]: the presence hash of one user in one chat: instance -> "devices:expires_ms",
// and "~v" -> the version of its last answer. ARGV: instance, devices (-1 = only read),
// ttl in ms. Drops expired entries and answers {devices of every live instance,
// version}. Versions grow with every call in Redis's execution order (microseconds of
// Redis's clock, or one more than the last), so a receiver can tell a stale total that
// arrived late from a newer one. Redis's clock is the only one used.
constexpr const char* kPresenceScript = R"lua(
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local key, devices, ttl = KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if devices > 0 then
  redis.call('HSET', key, ARGV[1], devices .. ':' .. (now_ms + ttl))
elseif devices == 0 then
  redis.call('HDEL', key, ARGV[1])
end
local total = 0
local entries = redis.call('HGETALL', key)
for i = 1, #entries, 2 do
  if entries[i] ~= '~v' then
    local n, expires = string.match(entries[i + 1], '^(%d+):(%d+)$')
    if n and tonumber(expires) > now_ms then
      total = total + tonumber(n)
    else
      redis.call('HDEL', key, entries[i])
    end
  end
end
local version = math.max(now_us, tonumber(redis.call('HGET', key, '~v') or '0') + 1)
if total > 0 then
  redis.call('HSET', key, '~v', string.format('%d', version))
  redis.call('PEXPIRE', key, ttl)
else
  redis.call('DEL', key)
end
return {total, version}
)lua";

std::string sha1_hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha1(), nullptr);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    static constexpr char digits[] = "0123456789abcdef";
    hex += digits[digest[i] >> 4];
    hex += digits[digest[i] & 0xf];
  }
  return hex;
}

std::string random_instance_id() {
  std::random_device device;
  std::uniform_int_distribution<std::uint64_t> digits;
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(digits(device)));
  return text;
}

std::string message_payload(const std::string& instance, const chat::Message& m) {
  return json::serialize(json::object{{"from", instance},
                                      {"kind", "message"},
                                      {"id", m.id},
                                      {"seq", m.seq},
                                      {"sender", m.sender},
                                      {"text", m.text},
                                      {"ts", m.timestamp_ms},
                                      {"client_id", m.client_id}});
}


}  // namespace

RedisFanout::RedisFanout(asio::io_context& io, chat::Hub& hub, store::Store& store,
                         metrics::Registry& registry, RedisFanoutOptions options)
    : hub_(hub),
      store_(store),
      options_(std::move(options)),
      instance_(random_instance_id()),
      presence_script_sha_(sha1_hex(kPresenceScript)),
      strand_(asio::make_strand(io.get_executor())),
      publisher_(std::make_shared<RedisConnection>(strand_, options_.endpoint, "publisher")),
      subscriber_(std::make_shared<RedisConnection>(strand_, options_.endpoint, "subscriber")),
      sequencer_([&hub](const chat::MessagePtr& message) { hub.deliver(message); },
                 options_.gap_hold,
                 std::max<ChatSequencer::Clock::duration>(options_.gap_hold, kStandInWait),
                 [this](const chat::Message& message) { return not_yet_announced(message); }),
      gap_timer_(strand_),
      heartbeat_timer_(strand_),
      published_(registry.counter("chatd_redis_published_total",
                                  "Messages and events published to Redis.")),
      publish_dropped_(registry.counter(
          "chatd_redis_publish_dropped_total",
          "Publishes not sent because Redis was unreachable (other instances read them from "
          "the store).")),
      received_(registry.counter("chatd_redis_received_total",
                                 "Messages and events received from other instances.")),
      gap_fills_(registry.counter("chatd_redis_gap_fills_total",
                                  "Reads from the store to fill a gap in a chat's sequence.")) {
  registry.gauge_callback("chatd_redis_connected", "1 while both Redis connections are up.",
                          [this] {
                            return publisher_->connected() && subscriber_->connected() ? 1.0 : 0.0;
                          });
  registry.gauge_callback("chatd_redis_held_messages",
                          "Messages held behind a gap in their chat's sequence.",
                          [this] { return static_cast<double>(sequencer_.held()); });
  // Every id made from now on has a later counter than this throwaway one: until
  // publish() has one of them, they are all not yet announced.
  announced_counter_ = chat::made_here_counter(chat::make_message_id(chat::now_ms())).value_or(0);
  hub_.set_interest_listener([this](const chat::ChatKey& chat) { on_interest(chat); });
  subscriber_->on_push([this](std::string_view kind, std::string_view channel,
                              std::string_view data) { on_push(kind, channel, data); });
  subscriber_->on_up([this] { on_subscriber_up(); });
  subscriber_->on_down([this] {
    subscribed_.clear();
    confirmed_.clear();
    unsubscribing_.clear();
  });
  publisher_->on_up([this] { on_publisher_up(); });
  publisher_->on_down([this] { publisher_was_down_ = true; });
}

RedisFanout::~RedisFanout() { hub_.set_interest_listener({}); }

void RedisFanout::start() {
  asio::post(strand_, [this] {
    publisher_->start();
    subscriber_->start();
    schedule_gap_check();
    schedule_heartbeat();
  });
  spdlog::info("fan-out: through Redis at {}:{} (instance {})", options_.endpoint.host,
               options_.endpoint.port, instance_);
}

void RedisFanout::stop() {
  // Runs after the drain: the last commits' publishes are queued on the strand
  // before this, and the publisher sends them before it disconnects.
  // Shared: past the wait below, the strand may still finish after stop() returned.
  auto done = std::make_shared<std::promise<void>>();
  asio::post(strand_, [this, done] {
    gap_timer_.cancel();
    heartbeat_timer_.cancel();
    // The closed sessions' presence updates are still in flight: the others
    // should learn at once that these users left, not at the TTL.
    auto finish = [this, done] {
      subscriber_->stop();
      publisher_->shutdown([done] { done->set_value(); });
    };
    if (presence_pending_ == 0) {
      finish();
    } else {
      on_presence_idle_ = finish;
    }
  });
  if (done->get_future().wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
    spdlog::warn("fan-out: Redis did not take the last publishes within 2 s");
    asio::post(strand_, [this] { publisher_->stop(); });
  }
}

std::string_view RedisFanout::state() const {
  return publisher_->connected() && subscriber_->connected() ? "ok" : "unavailable";
}

std::string RedisFanout::channel_of(const chat::ChatKey& chat) {
  return std::string(kChannelPrefix) + chat.str();
}

std::string RedisFanout::presence_key(const chat::ChatKey& chat, const std::string& user) {
  // The user's name is length-prefixed, like the chat key, so no two
  // (chat, user) pairs share a key.
  return "chatd:presence:" + std::to_string(user.size()) + ":" + user + ":" + chat.str();
}

// ---------------------------------------------------------------------------
// Which chats this instance follows
// ---------------------------------------------------------------------------

void RedisFanout::on_interest(const chat::ChatKey& chat) {
  // Called from any thread by the hub, after its change. Deciding under one
  // mutex, from the hub's state now, makes racing calls for a chat end right.
  std::lock_guard lock(interest_mutex_);
  const bool wanted = hub_.has_chat(chat);
  if (wanted == sequencer_.following(chat)) return;
  if (wanted) {
    // Followed before join() returns: the new session's history read comes
    // after this, so nothing committed from now on can pass it by.
    sequencer_.follow(chat);
    asio::post(strand_, [this, chat] { subscribe(chat); });
  } else {
    sequencer_.unfollow(chat);
    asio::post(strand_, [this, chat] { unsubscribe(chat); });
  }
}

void RedisFanout::subscribe(const chat::ChatKey& chat) {
  if (!sequencer_.following(chat)) return;  // left again meanwhile
  if (!subscriber_->connected()) {
    sync_chat(chat);  // Redis is down: the store alone; recovery follows the reconnect
    return;
  }
  const std::string channel = channel_of(chat);
  if (subscribed_.contains(channel)) {
    sync_chat(chat);  // still subscribed from before: no confirmation will come
    return;
  }
  // hiredis 0.14 forgets a channel's callback when an UNSUBSCRIBE's answer
  // comes, even with a SUBSCRIBE sent after it: while one is on its way, the
  // SUBSCRIBE waits for that answer (on_push).
  if (!unsubscribing_.contains(channel)) {
    subscribed_.insert(channel);
    subscriber_->subscribe(channel);  // the confirmation starts the sync (on_push)
  }
  // A confirmation that does not come (Redis stalled) must not hold this
  // chat's local messages: after a while the store alone gives the baseline.
  auto timer = std::make_shared<asio::steady_timer>(strand_, kSyncTimeout);
  timer->async_wait([this, chat, channel, timer](boost::system::error_code error) {
    if (!error && sequencer_.following(chat) && !sequencer_.synced(chat) &&
        !confirmed_.contains(channel)) {
      spdlog::warn("fan-out: no subscription confirmation for {} within {} ms; reading it from "
                   "the store", chat.str(), kSyncTimeout.count());
      sync_chat(chat);
    }
  });
}

void RedisFanout::unsubscribe(const chat::ChatKey& chat) {
  if (sequencer_.following(chat)) return;  // joined again meanwhile
  announced_.erase(presence_key(chat, chat.first()));
  announced_.erase(presence_key(chat, chat.second()));
  const std::string channel = channel_of(chat);
  confirmed_.erase(channel);
  if (subscribed_.erase(channel) != 0 && subscriber_->unsubscribe(channel)) {
    unsubscribing_.insert(channel);
  }
}

void RedisFanout::on_subscriber_up() {
  subscribed_.clear();
  confirmed_.clear();
  unsubscribing_.clear();
  subscriber_->subscribe(std::string(kResyncChannel));
  // Each confirmation re-reads its chat from the last delivered seq: what the
  // other instances published while this connection was down is recovered.
  for (const auto& chat : sequencer_.followed()) {
    const std::string channel = channel_of(chat);
    subscribed_.insert(channel);
    subscriber_->subscribe(channel);
  }
}

void RedisFanout::on_publisher_up() {
  if (!publisher_was_down_) return;
  publisher_was_down_ = false;
  // A restarted Redis has lost every presence entry: this instance's go back
  // at once rather than at the next heartbeat. Versions start over with it.
  for (auto& [key, known] : announced_) known.version = 0;
  heartbeat();
  // What this instance committed while it could not publish never reached
  // the others: they re-read their chats from the store.
  publisher_->command(
      {"PUBLISH", std::string(kResyncChannel), json::serialize(json::object{{"from", instance_}})});
}

// ---------------------------------------------------------------------------
// From Redis
// ---------------------------------------------------------------------------

void RedisFanout::on_push(std::string_view kind, std::string_view channel, std::string_view data) {
  if (kind != "message") spdlog::debug("fan-out: redis {} {} ({})", kind, channel, data);
  if (channel == kResyncChannel) {
    if (kind == "message") {
      boost::system::error_code error;
      const json::value value = json::parse(data, error);
      const auto* from = error || !value.is_object() ? nullptr : value.as_object().if_contains("from");
      if (from != nullptr && from->is_string() && from->as_string() == instance_) return;
      recover_all();
    }
    return;
  }
  if (!channel.starts_with(kChannelPrefix)) return;
  const auto chat = chat::ChatKey::parse(channel.substr(kChannelPrefix.size()));
  if (!chat) return;
  if (kind == "subscribe") {
    confirmed_.insert(std::string(channel));
    if (sequencer_.following(*chat)) sync_chat(*chat);
  } else if (kind == "unsubscribe") {
    const std::string name(channel);
    unsubscribing_.erase(name);
    // Followed again while the UNSUBSCRIBE was on its way: subscribe now.
    if (sequencer_.following(*chat) && subscribed_.insert(name).second) {
      subscriber_->subscribe(name);
    }
  } else if (kind == "message") {
    on_payload(*chat, data);
  }
}

void RedisFanout::on_payload(const chat::ChatKey& chat, std::string_view payload) {
  boost::system::error_code error;
  const json::value value = json::parse(payload, error);
  if (error || !value.is_object()) {
    spdlog::debug("fan-out: ignored a malformed publish on {}", channel_of(chat));
    return;
  }
  const json::object& o = value.as_object();
  const auto text = [&o](std::string_view key) -> std::string {
    const auto* field = o.if_contains(key);
    return field != nullptr && field->is_string() ? std::string(field->as_string()) : std::string();
  };
  const auto number = [&o](std::string_view key) -> std::int64_t {
    const auto* field = o.if_contains(key);
    if (field == nullptr) return 0;
    if (field->is_int64()) return field->as_int64();
    if (field->is_uint64()) return static_cast<std::int64_t>(field->as_uint64());
    return 0;
  };
  if (text("from") == instance_) return;  // delivered here when committed
  received_.inc();
  const std::string kind = text("kind");
  if (kind == "message") {
    auto message = std::make_shared<chat::Message>(chat);
    message->seq = static_cast<std::uint64_t>(number("seq"));
    message->id = text("id");
    message->sender = text("sender");
    message->text = text("text");
    message->timestamp_ms = number("ts");
    message->client_id = text("client_id");
    if (message->seq == 0 || !chat.has_participant(message->sender)) return;
    sequencer_.offer(message);
  } else if (kind == "event") {
    hub_.notify(chat, 0, std::make_shared<const std::string>(text("frame")));
  } else if (kind == "presence") {
    const std::string user = text("user");
    if (!chat.has_participant(user)) return;
    const Presence presence{static_cast<std::size_t>(number("devices")),
                            static_cast<std::uint64_t>(number("version"))};
    bool changed = false;
    if (presence.version != 0 && newer(chat, user, presence, changed)) {
      announce(chat, 0, user, presence, false);
    }
  }
}

// ---------------------------------------------------------------------------
// From the store
// ---------------------------------------------------------------------------

void RedisFanout::sync_chat(const chat::ChatKey& chat) {
  if (sequencer_.synced(chat)) {
    fill_chat(chat, sequencer_.delivered(chat));
    return;
  }
  store::HistoryQuery query;
  query.limit = options_.sync_messages;
  store_.history(chat, query,
                 asio::bind_executor(strand_, [this, chat](store::HistoryPage page) {
                   if (page.error != store::StoreError::none) {
                     // Held until the store answers; asked again after the hold.
                     auto timer = std::make_shared<asio::steady_timer>(strand_, options_.gap_hold);
                     timer->async_wait([this, chat, timer](boost::system::error_code error) {
                       if (!error && sequencer_.following(chat)) sync_chat(chat);
                     });
                     return;
                   }
                   sequencer_.sync(chat, page.messages);
                 }));
}

void RedisFanout::fill_chat(const chat::ChatKey& chat, std::uint64_t after_seq) {
  store::HistoryQuery query;
  query.after_seq = after_seq;
  query.oldest_first = true;
  query.limit = kFillPage;
  store_.history(chat, query,
                 asio::bind_executor(strand_, [this, chat](store::HistoryPage page) {
                   if (page.error != store::StoreError::none) {
                     sequencer_.fill_failed(chat);
                     return;
                   }
                   sequencer_.fill(chat, page.messages);
                   if (page.has_more && !page.messages.empty()) {
                     fill_chat(chat, page.messages.back()->seq);
                   }
                 }));
}

void RedisFanout::recover_all() {
  for (const auto& chat : sequencer_.followed()) {
    if (sequencer_.synced(chat)) fill_chat(chat, sequencer_.delivered(chat));
  }
}

void RedisFanout::schedule_gap_check() {
  gap_timer_.expires_after(std::max<std::chrono::milliseconds>(options_.gap_hold / 4,
                                                               std::chrono::milliseconds(5)));
  gap_timer_.async_wait([this](boost::system::error_code error) {
    if (error) return;
    for (const auto& request : sequencer_.due(ChatSequencer::Clock::now())) {
      gap_fills_.inc();
      fill_chat(request.chat, request.after_seq);
    }
    schedule_gap_check();
  });
}

// ---------------------------------------------------------------------------
// To Redis
// ---------------------------------------------------------------------------

bool RedisFanout::not_yet_announced(const chat::Message& message) const {
  const auto counter = chat::made_here_counter(message.id);
  if (!counter) return false;  // another instance's, or this one's before a restart
  // Made here after the last one publish() was given (24-bit counter, wrapping):
  // its commit is not announced yet, its own copy is on its way.
  const std::uint32_t ahead = (*counter - announced_counter_.load()) & 0xFFFFFF;
  return ahead != 0 && ahead < 0x800000;
}

void RedisFanout::publish(std::span<const chat::MessagePtr> batch) {
  // On the commit thread: local connections first, straight away.
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(batch.size());
  // The batch comes in seq order, which is not its id order when the store
  // renumbered a message: the counter moves past the batch only once all of it
  // is offered, so that no message of it counts as announced before it is.
  std::uint32_t newest = announced_counter_.load();
  for (const auto& message : batch) {
    sequencer_.offer(message);
    const auto counter = chat::made_here_counter(message->id);
    if (counter && ((*counter - newest) & 0xFFFFFF) < 0x800000) newest = *counter;
    out.emplace_back(channel_of(message->chat), message_payload(instance_, *message));
  }
  announced_counter_ = newest;
  asio::post(strand_, [this, out = std::move(out)]() mutable {
    for (auto& [channel, payload] : out) send_publish(std::move(channel), std::move(payload));
  });
}

void RedisFanout::publish_event(const chat::ChatKey& chat, chat::ConnectionId origin,
                                std::shared_ptr<const std::string> frame) {
  hub_.notify(chat, origin, frame);
  std::string payload = json::serialize(
      json::object{{"from", instance_}, {"kind", "event"}, {"frame", *frame}});
  asio::post(strand_, [this, channel = channel_of(chat), payload = std::move(payload)]() mutable {
    send_publish(std::move(channel), std::move(payload));
  });
}

void RedisFanout::send_publish(std::string channel, std::string payload) {
  if (publisher_->command({"PUBLISH", std::move(channel), std::move(payload)})) {
    published_.inc();
  } else {
    publish_dropped_.inc();
    publisher_was_down_ = true;
  }
}

// ---------------------------------------------------------------------------
// Presence
// ---------------------------------------------------------------------------

void RedisFanout::presence_script(const chat::ChatKey& chat, const std::string& user,
                                  std::optional<std::size_t> local,
                                  std::function<void(Presence)> done) {
  // What this instance sees, when Redis cannot answer: unversioned.
  const Presence here{hub_.connections_of(chat, user), 0};
  std::vector<std::string> args{
      "EVALSHA",
      presence_script_sha_,
      "1",
      presence_key(chat, user),
      instance_,
      local ? std::to_string(*local) : std::string("-1"),
      std::to_string(std::chrono::milliseconds(options_.presence_ttl).count())};
  ++presence_pending_;
  auto answer = [this, done, here](const RedisReply* reply) {
    if (reply != nullptr && reply->type == RedisReply::Type::array &&
        reply->elements.size() == 2 && reply->elements[0].type == RedisReply::Type::integer &&
        reply->elements[1].type == RedisReply::Type::integer) {
      done(Presence{static_cast<std::size_t>(reply->elements[0].integer),
                    static_cast<std::uint64_t>(reply->elements[1].integer)});
    } else {
      if (reply != nullptr && reply->is_error()) {
        spdlog::warn("fan-out: presence script failed: {}", reply->str);
      }
      done(here);
    }
    presence_done();
  };
  // By its hash: the script's text crosses the network only when Redis does not
  // have it yet (a new or restarted Redis answers NOSCRIPT; EVAL then caches it).
  const bool sent = publisher_->command(
      args, [this, args, answer](std::optional<RedisReply> reply) mutable {
        if (reply && reply->is_error() && reply->str.starts_with("NOSCRIPT")) {
          args[0] = "EVAL";
          args[1] = kPresenceScript;
          if (publisher_->command(args, [answer](std::optional<RedisReply> second) {
                answer(second ? &*second : nullptr);
              })) {
            return;
          }
          answer(nullptr);
          return;
        }
        answer(reply ? &*reply : nullptr);
      });
  if (!sent) answer(nullptr);
}

void RedisFanout::presence_done() {
  if (--presence_pending_ == 0 && on_presence_idle_) std::exchange(on_presence_idle_, {})();
}

bool RedisFanout::newer(const chat::ChatKey& chat, const std::string& user, Presence presence,
                        bool& changed) {
  if (!sequencer_.following(chat)) {  // no connection here: nothing to remember
    changed = true;
    return true;
  }
  auto& known = announced_[presence_key(chat, user)];
  changed = presence.devices != known.devices;
  // Unversioned (Redis unreachable): this instance's own view, always taken.
  if (presence.version != 0 && presence.version <= known.version) return false;
  known = presence;
  return true;
}

void RedisFanout::announce(const chat::ChatKey& chat, chat::ConnectionId origin,
                           const std::string& user, Presence presence, bool publish) {
  hub_.notify(chat, origin,
              std::make_shared<const std::string>(chat::v2::presence_frame(user, presence.devices)));
  if (!publish || presence.version == 0) return;
  send_publish(channel_of(chat), json::serialize(json::object{{"from", instance_},
                                                              {"kind", "presence"},
                                                              {"user", user},
                                                              {"devices", presence.devices},
                                                              {"version", presence.version}}));
}

void RedisFanout::presence_changed(const chat::ChatKey& chat, chat::ConnectionId origin,
                                   const std::string& user, std::size_t /*local_devices*/) {
  asio::post(strand_, [this, chat, origin, user] {
    // The hub's count now, not the one at the call: calls may arrive out of order.
    const std::size_t local = hub_.connections_of(chat, user);
    presence_script(chat, user, local, [this, chat, origin, user](Presence presence) {
      bool changed = false;
      // The change itself is always told (the joining session's peers expect
      // it), unless a newer total was told already.
      if (newer(chat, user, presence, changed)) announce(chat, origin, user, presence, true);
    });
  });
}

void RedisFanout::devices(const chat::ChatKey& chat, const std::string& user,
                          DevicesHandler handler) {
  asio::post(strand_, [this, chat, user, handler = std::move(handler)] {
    presence_script(chat, user, std::nullopt,
                    [handler](Presence presence) { handler(presence.devices); });
  });
}

void RedisFanout::schedule_heartbeat() {
  heartbeat_timer_.expires_after(
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.presence_ttl) / 3);
  heartbeat_timer_.async_wait([this](boost::system::error_code error) {
    if (error) return;
    heartbeat();
    schedule_heartbeat();
  });
}

void RedisFanout::heartbeat() {
  if (!publisher_->connected()) return;
  // Refreshes this instance's entries and reads every total of the chats it
  // follows: a user whose instance died drops out here, and this instance's
  // connections are told.
  for (const auto& chat : sequencer_.followed()) {
    for (const std::string* user : {&chat.first(), &chat.second()}) {
      const std::size_t local = hub_.connections_of(chat, *user);
      presence_script(chat, *user, local, [this, chat, name = *user](Presence presence) {
        bool changed = false;
        if (newer(chat, name, presence, changed) && changed) {
          announce(chat, 0, name, presence, false);
        }
      });
    }
  }
}

}  // namespace chatd::fanout::redis
