#include "fanout/redis/redis_fanout.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <future>
#include <random>
#include <utility>
#include <vector>

#include "fanout/redis/wire_format.h"
#include "metrics/registry.h"
#include "store/store.h"

namespace chatd::fanout::redis {
namespace asio = boost::asio;

namespace {

/// Longest wait of a stand-in (a store copy of this instance's own commit) for
/// the commit thread's copy: a MongoDB batch with sequence conflicts between
/// instances is announced only when all of it is written, after several round trips.
constexpr std::chrono::seconds kStandInWait{15};

std::string random_instance_id() {
  std::random_device device;
  std::uniform_int_distribution<std::uint64_t> digits;
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(digits(device)));
  return text;
}

metrics::Counter& dropped_full(metrics::Registry& registry, const char* kind) {
  return registry.counter("chatd_redis_dropped_total",
                          "Publishes dropped because the publisher's commands waiting for Redis "
                          "were past REDIS_MAX_PENDING_BYTES (other instances re-read the store).",
                          {{"kind", kind}});
}

}  // namespace

RedisFanout::RedisFanout(asio::io_context& io, chat::Hub& hub, store::Store& store,
                         metrics::Registry& registry, RedisFanoutOptions options)
    : hub_(hub),
      options_(std::move(options)),
      instance_(random_instance_id()),
      strand_(asio::make_strand(io.get_executor())),
      publisher_(std::make_shared<RedisConnection>(strand_, options_.endpoint, "publisher",
                                                   options_.max_pending_bytes)),
      subscriber_(std::make_shared<RedisConnection>(strand_, options_.endpoint, "subscriber",
                                                    options_.max_pending_bytes)),
      sequencer_(
          [&hub](const chat::MessagePtr& message) {
            // A copy read from the store before its own commit thread
            // announced it (a slow commit) knows no origin: the book does.
            if (message->origin == 0 && chat::made_here(message->id)) {
              if (const chat::ConnectionId origin = chat::noted_origin(message->id)) {
                auto copy = std::make_shared<chat::Message>(*message);
                copy->origin = origin;
                hub.deliver(copy);
                return;
              }
            }
            hub.deliver(message);
          },
          options_.gap_hold,
          std::max<ChatSequencer::Clock::duration>(options_.gap_hold, kStandInWait),
          [this](const chat::Message& message) { return stand_ins_.not_yet_announced(message); }),
      published_(registry.counter("chatd_redis_published_total",
                                  "Messages and events published to Redis.")),
      dropped_unreachable_(registry.counter(
          "chatd_redis_publish_dropped_total",
          "Publishes not sent because Redis was unreachable (other instances read them from "
          "the store).")),
      dropped_full_messages_(dropped_full(registry, "message")),
      dropped_full_events_(dropped_full(registry, "event")),
      dropped_full_presence_(dropped_full(registry, "presence")),
      received_(registry.counter("chatd_redis_received_total",
                                 "Messages and events received from other instances.")),
      gap_fills_(registry.counter("chatd_redis_gap_fills_total",
                                  "Reads from the store to fill a gap in a chat's sequence.")),
      sealed_(registry.counter("chatd_sealed_seqs_total",
                               "Seqs another instance reserved and never wrote, sealed with "
                               "fillers (docs/scaling.md, \"Seq allocation\").")),
      catch_up_(
          strand_, store, sequencer_, gap_fills_, sealed_,
          StoreCatchUp::Options{options_.gap_hold, options_.sync_messages, options_.seal_after}),
      subscriptions_(strand_, *subscriber_, sequencer_, catch_up_),
      presence_(strand_, hub_, sequencer_, *publisher_, instance_, options_.presence_ttl,
                [this](std::string channel, std::string payload) {
                  send_publish(Kind::presence, std::move(channel), std::move(payload));
                }) {
  chat::enable_origin_book();  // for the copies the sequencer may read back (deliver above)
  registry.gauge_callback(
      "chatd_redis_connected", "1 while both Redis connections are up.",
      [this] { return publisher_->connected() && subscriber_->connected() ? 1.0 : 0.0; });
  registry.gauge_callback("chatd_redis_held_messages",
                          "Messages held behind a gap in their chat's sequence.",
                          [this] { return static_cast<double>(sequencer_.held()); });
  const char* pending_help =
      "Bytes of commands sent to Redis whose answer has not come, per connection "
      "(bounded by REDIS_MAX_PENDING_BYTES).";
  registry.gauge_callback("chatd_redis_pending_bytes", pending_help,
                          [this] { return static_cast<double>(publisher_->pending_bytes()); },
                          {{"connection", "publisher"}});
  registry.gauge_callback("chatd_redis_pending_bytes", pending_help,
                          [this] { return static_cast<double>(subscriber_->pending_bytes()); },
                          {{"connection", "subscriber"}});
  hub_.set_interest_listener([this](const chat::ChatKey& chat) { on_interest(chat); });
  subscriber_->on_push([this](std::string_view kind, std::string_view channel,
                              std::string_view data) { on_push(kind, channel, data); });
  subscriber_->on_up([this] { subscriptions_.on_up(); });
  subscriber_->on_down([this] { subscriptions_.on_down(); });
  publisher_->on_up([this] { on_publisher_up(); });
  publisher_->on_down([this] { publishes_lost_ = true; });
  publisher_->on_drained([this] { on_publisher_drained(); });
}

RedisFanout::~RedisFanout() {
  hub_.set_interest_listener({});
}

void RedisFanout::start() {
  asio::post(strand_, [this] {
    publisher_->start();
    subscriber_->start();
    catch_up_.start();
    presence_.start();
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
    catch_up_.stop();
    // The closed sessions' presence updates are still in flight: the others
    // should learn at once that these users left, not at the TTL.
    presence_.stop([this, done] {
      subscriber_->stop();
      publisher_->shutdown([done] { done->set_value(); });
    });
  });
  if (done->get_future().wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
    spdlog::warn("fan-out: Redis did not take the last publishes within 2 s");
    asio::post(strand_, [this] { publisher_->stop(); });
  }
}

std::string_view RedisFanout::state() const {
  return publisher_->connected() && subscriber_->connected() ? "ok" : "unavailable";
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
    asio::post(strand_, [this, chat] { subscriptions_.follow(chat); });
  } else {
    sequencer_.unfollow(chat);
    asio::post(strand_, [this, chat] {
      if (sequencer_.following(chat)) return;  // joined again meanwhile
      presence_.forget(chat);
      subscriptions_.unfollow(chat);
    });
  }
}

// ---------------------------------------------------------------------------
// From Redis
// ---------------------------------------------------------------------------

void RedisFanout::on_push(std::string_view kind, std::string_view channel, std::string_view data) {
  if (kind != "message") spdlog::debug("fan-out: redis {} {} ({})", kind, channel, data);
  if (channel == kResyncChannel) {
    if (kind == "message") {
      if (const auto from = decode_resync(data); from && *from == instance_) return;
      catch_up_.recover_all();
    }
    return;
  }
  const auto chat = chat_of_channel(channel);
  if (!chat) return;
  if (kind == "subscribe") {
    subscriptions_.confirmed(*chat, std::string(channel));
  } else if (kind == "unsubscribe") {
    subscriptions_.unsubscribed(*chat, std::string(channel));
  } else if (kind == "message") {
    on_payload(*chat, data);
  }
}

void RedisFanout::on_payload(const chat::ChatKey& chat, std::string_view payload) {
  const auto publish = decode_publish(chat, payload);
  if (!publish) {
    spdlog::debug("fan-out: ignored a malformed publish on {}", channel_of(chat));
    return;
  }
  if (publish->from == instance_) return;  // delivered here when committed
  received_.inc();
  switch (publish->kind) {
    case Publish::Kind::message:
      sequencer_.offer(publish->message);
      break;
    case Publish::Kind::event:
      hub_.notify(chat, 0, std::make_shared<const std::string>(publish->frame));
      break;
    case Publish::Kind::presence:
      presence_.published(chat, publish->user, publish->presence);
      break;
  }
}

// ---------------------------------------------------------------------------
// To Redis
// ---------------------------------------------------------------------------

void RedisFanout::publish(std::span<const chat::MessagePtr> batch) {
  // On the commit thread: local connections first, straight away.
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(batch.size());
  for (const auto& message : batch) {
    sequencer_.offer(message);
    out.emplace_back(channel_of(message->chat), encode_message(instance_, *message));
  }
  stand_ins_.announce(batch);
  asio::post(strand_, [this, out = std::move(out)]() mutable {
    for (auto& [channel, payload] : out) {
      send_publish(Kind::message, std::move(channel), std::move(payload));
    }
  });
}

void RedisFanout::publish_event(const chat::ChatKey& chat, chat::ConnectionId origin,
                                std::shared_ptr<const std::string> frame) {
  hub_.notify(chat, origin, frame);
  asio::post(strand_, [this, channel = channel_of(chat),
                       payload = encode_event(instance_, *frame)]() mutable {
    send_publish(Kind::event, std::move(channel), std::move(payload));
  });
}

void RedisFanout::send_publish(Kind kind, std::string channel, std::string payload) {
  switch (publisher_->command({"PUBLISH", std::move(channel), std::move(payload)})) {
    case RedisConnection::Sent::queued:
      published_.inc();
      return;
    case RedisConnection::Sent::not_connected:
      dropped_unreachable_.inc();
      break;
    case RedisConnection::Sent::full:
      // Dropped, not queued: the store has every message, and the others are
      // told to read it once the publisher drains (on_publisher_drained).
      (kind == Kind::message ? dropped_full_messages_
       : kind == Kind::event ? dropped_full_events_
                             : dropped_full_presence_)
          .inc();
      break;
  }
  publishes_lost_ = true;
}

void RedisFanout::on_publisher_up() {
  if (!publishes_lost_) return;
  publishes_lost_ = false;
  // A restarted Redis has lost every presence entry: this instance's go back
  // at once rather than at the next heartbeat. Versions start over with it.
  presence_.forget_versions();
  presence_.heartbeat();
  // What this instance committed while it could not publish never reached
  // the others: they re-read their chats from the store.
  publisher_->command({"PUBLISH", std::string(kResyncChannel), encode_resync(instance_)});
}

void RedisFanout::on_publisher_drained() {
  // Redis answers again after the output was full: what was dropped meanwhile
  // is in the store. The resync goes after every publish still on its way, so
  // the others re-read once they have those. Presence answered from this
  // instance's own view meanwhile: this instance's entries are set again and
  // the others told the totals.
  // The resync first: the heartbeat's scripts could fill the output again.
  if (publishes_lost_) {
    publishes_lost_ =
        publisher_->command({"PUBLISH", std::string(kResyncChannel), encode_resync(instance_)}) !=
        RedisConnection::Sent::queued;
  }
  presence_.heartbeat(true);
}

void RedisFanout::presence_changed(const chat::ChatKey& chat, chat::ConnectionId origin,
                                   const std::string& user, std::size_t /*local_devices*/) {
  presence_.changed(chat, origin, user);
}

void RedisFanout::devices(const chat::ChatKey& chat, const std::string& user,
                          DevicesHandler handler) {
  presence_.devices(chat, user, std::move(handler));
}

}  // namespace chatd::fanout::redis
