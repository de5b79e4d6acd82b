#include "fanout/redis/subscriptions.h"

#include <spdlog/spdlog.h>

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>

#include "fanout/redis/wire_format.h"

namespace chatd::fanout::redis {
namespace asio = boost::asio;

namespace {

/// Longest wait for a subscription's confirmation before a chat is synced anyway.
constexpr std::chrono::milliseconds kSyncTimeout{1000};

}  // namespace

Subscriptions::Subscriptions(RedisConnection::Strand strand, RedisConnection& subscriber,
                             const ChatSequencer& sequencer, StoreCatchUp& catch_up)
    : strand_(std::move(strand)),
      subscriber_(subscriber),
      sequencer_(sequencer),
      catch_up_(catch_up) {}

void Subscriptions::follow(const chat::ChatKey& chat) {
  if (!sequencer_.following(chat)) return;  // left again meanwhile
  if (!subscriber_.connected()) {
    catch_up_.sync(chat);  // Redis is down: the store alone; recovery follows the reconnect
    return;
  }
  const std::string channel = channel_of(chat);
  if (subscribed_.contains(channel)) {
    catch_up_.sync(chat);  // still subscribed from before: no confirmation will come
    return;
  }
  // hiredis 0.14 forgets a channel's callback when an UNSUBSCRIBE's answer
  // comes, even with a SUBSCRIBE sent after it: while one is on its way, the
  // SUBSCRIBE waits for that answer (unsubscribed()).
  if (!unsubscribing_.contains(channel)) {
    subscribed_.insert(channel);
    subscriber_.subscribe(channel);  // the confirmation starts the sync (confirmed())
  }
  // A confirmation that does not come (Redis stalled) must not hold this
  // chat's local messages: after a while the store alone gives the baseline.
  auto timer = std::make_shared<asio::steady_timer>(strand_, kSyncTimeout);
  timer->async_wait([this, chat, channel, timer](boost::system::error_code error) {
    if (!error && sequencer_.following(chat) && !sequencer_.synced(chat) &&
        !confirmed_.contains(channel)) {
      spdlog::warn(
          "fan-out: no subscription confirmation for {} within {} ms; reading it from the store",
          chat.str(), kSyncTimeout.count());
      catch_up_.sync(chat);
    }
  });
}

void Subscriptions::unfollow(const chat::ChatKey& chat) {
  const std::string channel = channel_of(chat);
  confirmed_.erase(channel);
  if (subscribed_.erase(channel) != 0 && subscriber_.unsubscribe(channel)) {
    unsubscribing_.insert(channel);
  }
}

void Subscriptions::on_up() {
  on_down();
  subscriber_.subscribe(std::string(kResyncChannel));
  // Each confirmation re-reads its chat from the last delivered seq: what the
  // other instances published while this connection was down is recovered.
  for (const auto& chat : sequencer_.followed()) {
    const std::string channel = channel_of(chat);
    subscribed_.insert(channel);
    subscriber_.subscribe(channel);
  }
}

void Subscriptions::on_down() {
  subscribed_.clear();
  confirmed_.clear();
  unsubscribing_.clear();
}

void Subscriptions::confirmed(const chat::ChatKey& chat, const std::string& channel) {
  confirmed_.insert(channel);
  if (sequencer_.following(chat)) catch_up_.sync(chat);
}

void Subscriptions::unsubscribed(const chat::ChatKey& chat, const std::string& channel) {
  unsubscribing_.erase(channel);
  // Followed again while the UNSUBSCRIBE was on its way: subscribe now.
  if (sequencer_.following(chat) && subscribed_.insert(channel).second) {
    subscriber_.subscribe(channel);
  }
}

}  // namespace chatd::fanout::redis
