#include "fanout/chat_sequencer.h"

namespace chatd::fanout {

ChatSequencer::ChatSequencer(Deliver deliver, Clock::duration gap_hold)
    : deliver_(std::move(deliver)), gap_hold_(gap_hold) {}

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
  shard.chats.erase(chat.str());
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

void ChatSequencer::hold_locked(ChatState& state, const chat::MessagePtr& message) {
  if (state.synced && message->seq <= state.delivered) return;  // delivered already
  if (state.held.size() >= kMaxHeldPerChat) {
    // Bounded: the newest held message gives way. Nothing is lost by it; the
    // fill reads everything after the last delivered seq from the store.
    if (message->seq > state.held.rbegin()->first) return;
    state.held.erase(std::prev(state.held.end()));
  }
  if (state.held.empty()) state.gap_since = Clock::now();
  // The first copy stays: a local commit carries its origin connection, which
  // a copy read back from the store does not (and must not be echoed to).
  state.held.try_emplace(message->seq, message);
}

void ChatSequencer::drain_locked(ChatState& state) {
  while (!state.held.empty()) {
    const auto first = state.held.begin();
    if (first->first <= state.delivered) {
      state.held.erase(first);
      continue;
    }
    if (first->first != state.delivered + 1) break;
    deliver_(first->second);
    state.delivered = first->first;
    state.held.erase(first);
  }
  if (!state.held.empty()) state.gap_since = Clock::now();
}

void ChatSequencer::accept_locked(ChatState& state, const chat::MessagePtr& message) {
  if (!state.synced) {
    hold_locked(state, message);
    return;
  }
  if (message->seq <= state.delivered) return;  // delivered already
  if (message->seq == state.delivered + 1) {
    deliver_(message);  // the usual case: next in line
    state.delivered = message->seq;
    if (!state.held.empty()) drain_locked(state);
    return;
  }
  const bool was_waiting = !state.held.empty();
  const auto since = state.gap_since;
  hold_locked(state, message);
  // A gap that was already open keeps its age: more messages behind it do
  // not postpone its fill.
  if (was_waiting) state.gap_since = since;
}

void ChatSequencer::offer(const chat::MessagePtr& message) {
  Shard& shard = shard_of(message->chat);
  std::lock_guard lock(shard.mutex);
  const auto found = shard.chats.find(message->chat.str());
  if (found == shard.chats.end()) return;
  accept_locked(found->second, message);
}

void ChatSequencer::sync(const chat::ChatKey& chat, std::span<const chat::MessagePtr> newest) {
  Shard& shard = shard_of(chat);
  std::lock_guard lock(shard.mutex);
  const auto found = shard.chats.find(chat.str());
  if (found == shard.chats.end()) return;
  ChatState& state = found->second;
  if (state.synced) {
    for (const auto& message : newest) accept_locked(state, message);
    return;
  }
  for (const auto& message : newest) state.held.try_emplace(message->seq, message);
  const std::uint64_t baseline = newest.empty() ? 0 : newest.back()->seq;
  // Up to the baseline, everything goes out in order, gaps or not: these are
  // the newest messages of the store, and connections drop what they had.
  while (!state.held.empty() && state.held.begin()->first <= baseline) {
    deliver_(state.held.begin()->second);
    state.held.erase(state.held.begin());
  }
  state.delivered = baseline;
  state.synced = true;
  drain_locked(state);
}

void ChatSequencer::fill(const chat::ChatKey& chat, std::span<const chat::MessagePtr> page) {
  Shard& shard = shard_of(chat);
  std::lock_guard lock(shard.mutex);
  const auto found = shard.chats.find(chat.str());
  if (found == shard.chats.end()) return;
  ChatState& state = found->second;
  state.filling = false;
  for (const auto& message : page) accept_locked(state, message);
}

void ChatSequencer::fill_failed(const chat::ChatKey& chat) {
  Shard& shard = shard_of(chat);
  std::lock_guard lock(shard.mutex);
  const auto found = shard.chats.find(chat.str());
  if (found == shard.chats.end()) return;
  found->second.filling = false;
  found->second.gap_since = Clock::now();
}

std::vector<ChatSequencer::FillRequest> ChatSequencer::due(Clock::time_point now) {
  std::vector<FillRequest> requests;
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (auto& [key, state] : shard.chats) {
      if (!state.synced || state.filling || state.held.empty()) continue;
      if (now - state.gap_since < gap_hold_) continue;
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
