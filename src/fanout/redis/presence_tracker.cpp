#include "fanout/redis/presence_tracker.h"

#include <boost/asio/post.hpp>
#include <utility>

#include "chat/frames_v2.h"

namespace chatd::fanout::redis {
namespace asio = boost::asio;

PresenceTracker::PresenceTracker(RedisConnection::Strand strand, chat::Hub& hub,
                                 const ChatSequencer& sequencer, RedisConnection& publisher,
                                 std::string instance, std::chrono::seconds ttl, Publish publish)
    : strand_(std::move(strand)),
      hub_(hub),
      sequencer_(sequencer),
      publisher_(publisher),
      instance_(std::move(instance)),
      ttl_(ttl),
      publish_(std::move(publish)),
      script_(instance_, std::chrono::milliseconds(ttl)),
      heartbeat_timer_(strand_) {}

void PresenceTracker::start() {
  schedule_heartbeat();
}

void PresenceTracker::stop(std::function<void()> idle) {
  heartbeat_timer_.cancel();
  if (in_flight_ == 0) {
    idle();
  } else {
    on_idle_ = std::move(idle);
  }
}

void PresenceTracker::run(const chat::ChatKey& chat, const std::string& user,
                          std::optional<std::size_t> local, std::function<void(Presence)> done) {
  // What this instance sees, when Redis cannot answer: unversioned.
  const Presence here{hub_.connections_of(chat, user), 0};
  ++in_flight_;
  script_.run(publisher_, presence_key(chat, user), local,
              [this, done = std::move(done), here](std::optional<Presence> answer) {
                done(answer.value_or(here));
                if (--in_flight_ == 0 && on_idle_) std::exchange(on_idle_, {})();
              });
}

bool PresenceTracker::newer(const chat::ChatKey& chat, const std::string& user, Presence presence,
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

void PresenceTracker::announce(const chat::ChatKey& chat, chat::ConnectionId origin,
                               const std::string& user, Presence presence, bool publish) {
  hub_.notify(
      chat, origin,
      std::make_shared<const std::string>(chat::v2::presence_frame(user, presence.devices)));
  if (!publish || presence.version == 0) return;
  publish_(channel_of(chat), encode_presence(instance_, user, presence));
}

void PresenceTracker::changed(const chat::ChatKey& chat, chat::ConnectionId origin,
                              const std::string& user) {
  asio::post(strand_, [this, chat, origin, user] {
    // The hub's count now, not the one at the call: calls may arrive out of order.
    const std::size_t local = hub_.connections_of(chat, user);
    run(chat, user, local, [this, chat, origin, user](Presence presence) {
      bool changed = false;
      // The change itself is always told (the joining session's peers expect
      // it), unless a newer total was told already.
      if (newer(chat, user, presence, changed)) announce(chat, origin, user, presence, true);
    });
  });
}

void PresenceTracker::devices(const chat::ChatKey& chat, const std::string& user,
                              Fanout::DevicesHandler handler) {
  asio::post(strand_, [this, chat, user, handler = std::move(handler)] {
    run(chat, user, std::nullopt, [handler](Presence presence) { handler(presence.devices); });
  });
}

void PresenceTracker::published(const chat::ChatKey& chat, const std::string& user,
                                Presence presence) {
  bool changed = false;
  if (newer(chat, user, presence, changed)) announce(chat, 0, user, presence, false);
}

void PresenceTracker::forget(const chat::ChatKey& chat) {
  announced_.erase(presence_key(chat, chat.first()));
  announced_.erase(presence_key(chat, chat.second()));
}

void PresenceTracker::forget_versions() {
  for (auto& [key, known] : announced_) known.version = 0;
}

void PresenceTracker::schedule_heartbeat() {
  heartbeat_timer_.expires_after(std::chrono::duration_cast<std::chrono::milliseconds>(ttl_) / 3);
  heartbeat_timer_.async_wait([this](boost::system::error_code error) {
    if (error) return;
    heartbeat();
    schedule_heartbeat();
  });
}

void PresenceTracker::heartbeat(bool tell_others) {
  // Not while Redis cannot take it: each answer would be this instance's own
  // view, told as if it were the total.
  if (!publisher_.connected() || publisher_.full()) return;
  // Refreshes this instance's entries and reads every total of the chats it
  // follows: a user whose instance died drops out here, and this instance's
  // connections are told.
  for (const auto& chat : sequencer_.followed()) {
    for (const std::string* user : {&chat.first(), &chat.second()}) {
      const std::size_t local = hub_.connections_of(chat, *user);
      run(chat, *user, local, [this, chat, name = *user, tell_others](Presence presence) {
        bool changed = false;
        if (!newer(chat, name, presence, changed)) return;
        if (changed) announce(chat, 0, name, presence, false);
        if (tell_others && presence.version != 0) {
          publish_(channel_of(chat), encode_presence(instance_, name, presence));
        }
      });
    }
  }
}

}  // namespace chatd::fanout::redis
