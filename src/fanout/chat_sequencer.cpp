#include "fanout/chat_sequencer.h"

namespace chatd::fanout {

ChatSequencer::ChatSequencer(Deliver deliver, Clock::duration gap_hold,
                             Clock::duration stand_in_wait,
                             std::function<bool(const chat::Message&)> made_here)
    : deliver_(std::move(deliver)),
      gap_hold_(gap_hold),
      stand_in_wait_(stand_in_wait),
      made_here_(std::move(made_here)) {
  if (!made_here_) {
    made_here_ = [](const chat::Message& message) { return chat::made_here(message.id); };
  }
}

ChatSequencer::Shard& ChatSequencer::shard_of(const chat::ChatKey& chat) const {
  return shards_[std::hash<std::string>{}(chat.str()) % kShards];
}

void ChatSequencer::follow(const chat::ChatKey& chat) {
  Shard& shard = shard_of(chat);
  std::lock_guard lock(shard.mutex);
  shard.chats.try_emplace(chat.str());
}

void ChatSequencer::unfollow(const chat::ChatKey& chat) {
  Shard& shard = shard_of(chat);
  std::lock_guard lock(shard.mutex);
  const auto found = shard.chats.find(chat.str());
  if (found == shard.chats.end()) return;
  if (!found->second.held.empty()) --shard.waiting;
  shard.chats.erase(found);
}

bool ChatSequencer::following(const chat::ChatKey& chat) const {
  Shard& shard = shard_of(chat);
  std::lock_guard lock(shard.mutex);
  return shard.chats.contains(chat.str());
}

std::vector<chat::ChatKey> ChatSequencer::followed() const {
  std::vector<chat::ChatKey> result;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (const auto& [key, state] : shard.chats) result.push_back(*chat::ChatKey::parse(key));
  }
  return result;
}

void ChatSequencer::hold_locked(ChatState& state, const chat::MessagePtr& message, bool stand_in,
                                Clock::time_point now) {
  if (state.synced && message->seq <= state.delivered) return;  // delivered already
  if (const auto found = state.held.find(message->seq); found != state.held.end()) {
    // The first copy stays, unless it is a stand-in and this is the real one:
    // a local commit carries its origin connection, which must not get an echo.
    if (found->second.stand_in && !stand_in) found->second = Held{message, false, now};
    return;
  }
  if (state.held.size() >= kMaxHeldPerChat) {
    // Bounded: the newest held message gives way. Nothing is lost by it; the
    // fill reads everything after the last delivered seq from the store.
    if (message->seq > state.held.rbegin()->first) return;
    state.held.erase(std::prev(state.held.end()));
  }
  if (state.held.empty()) state.gap_since = now;
  state.held.emplace(message->seq, Held{message, stand_in, now});
}

void ChatSequencer::drain_locked(ChatState& state, Clock::time_point now) {
  const bool had_gap = !state.held.empty() && state.held.begin()->first != state.delivered + 1;
  while (!state.held.empty()) {
    const auto first = state.held.begin();
    if (first->first <= state.delivered) {
      state.held.erase(first);
      continue;
    }
    if (first->first != state.delivered + 1) break;
    if (first->second.stand_in && now - first->second.since < stand_in_wait_) break;
    deliver_(first->second.message);
    state.delivered = first->first;
    state.held.erase(first);
  }
  // A gap found now (not the one already waiting) starts its hold now.
  if (!state.held.empty() && state.held.begin()->first != state.delivered + 1 && !had_gap) {
    state.gap_since = now;
  }
}

void ChatSequencer::accept_locked(ChatState& state, const chat::MessagePtr& message,
                                  bool from_store) {
  const bool stand_in = from_store && made_here_(*message);
  if (state.synced && message->seq <= state.delivered) return;  // delivered already
  if (state.synced && !stand_in && message->seq == state.delivered + 1) {
    deliver_(message);  // the usual case: next in line
    state.delivered = message->seq;
    if (!state.held.empty()) drain_locked(state, Clock::now());
    return;
  }
  const auto now = Clock::now();
  hold_locked(state, message, stand_in, now);
  if (state.synced) drain_locked(state, now);
}

void ChatSequencer::offer(const chat::MessagePtr& message) {
  with_chat(message->chat, [&](ChatState& state) { accept_locked(state, message, false); });
}

void ChatSequencer::sync(const chat::ChatKey& chat, std::span<const chat::MessagePtr> newest) {
  with_chat(chat, [&](ChatState& state) { sync_locked(state, newest); });
}

void ChatSequencer::sync_locked(ChatState& state, std::span<const chat::MessagePtr> newest) {
  if (state.synced) {
    for (const auto& message : newest) accept_locked(state, message, true);
    return;
  }
  const auto now = Clock::now();
  for (const auto& message : newest) hold_locked(state, message, made_here_(*message), now);
  // Delivery starts at the oldest message known: the page's first, or a local
  // commit older still. Connections drop what their history had by seq.
  state.delivered = newest.empty() || state.held.empty() ? 0 : state.held.begin()->first - 1;
  state.synced = true;
  state.gap_since = now;
  drain_locked(state, now);
}

void ChatSequencer::fill(const chat::ChatKey& chat, std::span<const chat::MessagePtr> page) {
  with_chat(chat, [&](ChatState& state) {
    state.filling = false;
    for (const auto& message : page) accept_locked(state, message, true);
    if (!state.held.empty()) state.gap_since = Clock::now();  // asked again after the hold
  });
}

void ChatSequencer::fill_failed(const chat::ChatKey& chat) {
  with_chat(chat, [](ChatState& state) {
    state.filling = false;
    state.gap_since = Clock::now();
  });
}

std::vector<ChatSequencer::FillRequest> ChatSequencer::due(Clock::time_point now) {
  std::vector<FillRequest> requests;
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    if (shard.waiting == 0) continue;  // the usual case: no gap anywhere in the shard
    for (auto& [key, state] : shard.chats) {
      if (!state.synced || state.held.empty()) continue;
      const WaitingGuard guard(shard, state);
      if (state.held.begin()->first == state.delivered + 1) {
        drain_locked(state, now);  // a stand-in whose own copy is late
        if (state.held.empty() || state.held.begin()->first == state.delivered + 1) continue;
      }
      if (state.filling || now - state.gap_since < gap_hold_) continue;
      state.filling = true;
      requests.push_back({*chat::ChatKey::parse(key), state.delivered});
    }
  }
  return requests;
}

bool ChatSequencer::synced(const chat::ChatKey& chat) const {
  Shard& shard = shard_of(chat);
  std::lock_guard lock(shard.mutex);
  const auto found = shard.chats.find(chat.str());
  return found != shard.chats.end() && found->second.synced;
}

std::uint64_t ChatSequencer::delivered(const chat::ChatKey& chat) const {
  Shard& shard = shard_of(chat);
  std::lock_guard lock(shard.mutex);
  const auto found = shard.chats.find(chat.str());
  return found == shard.chats.end() ? 0 : found->second.delivered;
}

std::size_t ChatSequencer::held() const {
  std::size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (const auto& [key, state] : shard.chats) total += state.held.size();
  }
  return total;
}

}  // namespace chatd::fanout
