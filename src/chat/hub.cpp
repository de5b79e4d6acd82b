#include "chat/hub.h"

#include <algorithm>
#include <functional>

#include "chat/frames.h"

namespace chatd::chat {

Hub::Shard& Hub::shard_of(const ChatKey& chat) const {
  return shards_[std::hash<std::string>{}(chat.str()) % kShards];
}

std::size_t Hub::count_locked(const Entries& list, const std::string& user) {
  return static_cast<std::size_t>(std::count_if(list.begin(), list.end(), [&](const Entry& entry) {
    return !entry.subscriber.expired() && entry.user == user;
  }));
}

std::size_t Hub::join(const ChatKey& chat, const std::shared_ptr<Subscriber>& subscriber) {
  Shard& shard = shard_of(chat);
  std::size_t devices = 0;
  bool first = false;
  {
    std::lock_guard lock(shard.mutex);
    auto& list = shard.chats[chat.str()];
    first = list.empty();
    list.push_back(Entry{subscriber, subscriber.get(), subscriber->user()});
    devices = count_locked(list, subscriber->user());
  }
  if (first && interest_) interest_(chat);
  return devices;
}

std::size_t Hub::leave(const ChatKey& chat, const Subscriber& subscriber) {
  Shard& shard = shard_of(chat);
  std::size_t remaining = 0;
  bool last = false;
  {
    std::lock_guard lock(shard.mutex);
    const auto found = shard.chats.find(chat.str());
    if (found == shard.chats.end()) return 0;
    auto& list = found->second;
    // Also drops entries whose session is already gone.
    std::erase_if(list, [&](const Entry& entry) {
      return entry.address == &subscriber || entry.subscriber.expired();
    });
    remaining = count_locked(list, subscriber.user());
    last = list.empty();
    if (last) shard.chats.erase(found);
  }
  if (last && interest_) interest_(chat);
  return remaining;
}

bool Hub::has_chat(const ChatKey& chat) const {
  Shard& shard = shard_of(chat);
  std::lock_guard lock(shard.mutex);
  return shard.chats.contains(chat.str());
}

std::vector<std::shared_ptr<Subscriber>> Hub::receivers(const ChatKey& chat) const {
  std::vector<std::shared_ptr<Subscriber>> result;
  Shard& shard = shard_of(chat);
  std::lock_guard lock(shard.mutex);
  const auto found = shard.chats.find(chat.str());
  if (found == shard.chats.end()) return result;
  result.reserve(found->second.size());
  for (const Entry& entry : found->second) {
    // Released by the caller, after the mutex: see Entry.
    if (auto strong = entry.subscriber.lock()) result.push_back(std::move(strong));
  }
  return result;
}

void Hub::deliver(const MessagePtr& message) {
  if (message->kind == EntryKind::filler) return;  // holds a seq; nobody sees it
  const auto receivers_now = receivers(message->chat);
  if (receivers_now.empty()) return;
  std::shared_ptr<const std::string> frame;
  for (const auto& receiver : receivers_now) {
    if (receiver->connection_id() == message->origin) continue;
    // Serialized once, on first need, and shared by every receiver.
    if (!frame) frame = std::make_shared<const std::string>(message_frame(*message));
    receiver->deliver(message, frame);
  }
}

void Hub::notify(const ChatKey& chat, ConnectionId origin,
                 const std::shared_ptr<const std::string>& frame) {
  for (const auto& receiver : receivers(chat)) {
    if (receiver->connection_id() != origin) receiver->notify(frame);
  }
}

std::size_t Hub::connections_of(const ChatKey& chat, const std::string& user) const {
  Shard& shard = shard_of(chat);
  std::lock_guard lock(shard.mutex);
  const auto found = shard.chats.find(chat.str());
  return found == shard.chats.end() ? 0 : count_locked(found->second, user);
}

std::size_t Hub::active_chats() const {
  std::size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    total += shard.chats.size();
  }
  return total;
}

std::size_t Hub::connections() const {
  std::size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (const auto& [key, list] : shard.chats) total += list.size();
  }
  return total;
}

}  // namespace chatd::chat
