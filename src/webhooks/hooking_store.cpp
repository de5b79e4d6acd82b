#include "webhooks/hooking_store.h"

#include <deque>
#include <mutex>
#include <unordered_map>

namespace chatd::webhooks {

/// Appends waiting for their presence answer, per chat in the order made.
struct HookingStore::Waiting {
  struct Append {
    chat::PendingMessage message;
    AppendHandler handler;
    bool answered = false;
  };

  std::mutex mutex;
  store::Store* inner = nullptr;  ///< null once the HookingStore is gone
  std::unordered_map<std::string, std::deque<std::shared_ptr<Append>>> chats;

  /// `append` has its answer: it, and every answered append behind which it
  /// waited, go to the store in order. Under the mutex, so that two answers
  /// of one chat cannot pass each other; Store::append only queues.
  void answered(const std::shared_ptr<Append>& append, bool offline) {
    std::lock_guard lock(mutex);
    if (offline) append->message.hooks |= store::kHookOffline;
    append->answered = true;
    const auto found = chats.find(append->message.chat.str());
    if (found == chats.end()) return;
    auto& queue = found->second;
    while (!queue.empty() && queue.front()->answered) {
      auto next = std::move(queue.front());
      queue.pop_front();
      if (inner != nullptr) inner->append(std::move(next->message), std::move(next->handler));
    }
    if (queue.empty()) chats.erase(found);
  }
};

HookingStore::HookingStore(store::Store& inner, fanout::Fanout& fanout, std::uint8_t events)
    : inner_(inner), fanout_(fanout), events_(events), waiting_(std::make_shared<Waiting>()) {
  waiting_->inner = &inner_;
}

HookingStore::~HookingStore() {
  std::lock_guard lock(waiting_->mutex);
  waiting_->inner = nullptr;
  waiting_->chats.clear();
}

void HookingStore::append(chat::PendingMessage message, AppendHandler handler) {
  if (chat::is_change(message.kind)) {
    // A change sends no event; it keeps its place behind the chat's messages
    // still waiting for their presence answer.
    message.hooks = 0;
    std::lock_guard lock(waiting_->mutex);
    const auto found = waiting_->chats.find(message.chat.str());
    if (found == waiting_->chats.end()) {
      inner_.append(std::move(message), std::move(handler));
    } else {
      found->second.push_back(std::make_shared<Waiting::Append>(
          Waiting::Append{std::move(message), std::move(handler), true}));
    }
    return;
  }
  message.hooks = events_ & store::kHookCreated;
  if ((events_ & store::kHookOffline) == 0) {
    inner_.append(std::move(message), std::move(handler));
    return;
  }
  const auto recipient_of = [](const chat::PendingMessage& pending) -> const std::string& {
    return pending.sender == pending.chat.first() ? pending.chat.second() : pending.chat.first();
  };
  if (fanout_.devices_answer_at_once()) {
    // One instance: the hub's count, now; no other answer can pass this one.
    std::size_t devices = 1;
    fanout_.devices(message.chat, recipient_of(message),
                    [&devices](std::size_t count) { devices = count; });
    if (devices == 0) message.hooks |= store::kHookOffline;
    inner_.append(std::move(message), std::move(handler));
    return;
  }
  auto append = std::make_shared<Waiting::Append>(
      Waiting::Append{std::move(message), std::move(handler), false});
  const chat::ChatKey& chat = append->message.chat;  // the Append keeps it alive
  {
    std::lock_guard lock(waiting_->mutex);
    waiting_->chats[chat.str()].push_back(append);
  }
  fanout_.devices(chat, recipient_of(append->message),
                  [waiting = waiting_, append](std::size_t devices) {
                    waiting->answered(append, devices == 0);
                  });
}

}  // namespace chatd::webhooks
