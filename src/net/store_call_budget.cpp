#include "net/store_call_budget.h"

namespace chatd::net {

// The counter and the waiting flag use sequentially consistent operations:
// give_back() decrements then looks for waiters, wait() announces itself
// then looks at the count again, so one of the two always sees the other and
// no waiter is left asleep with room free.

void StoreCallBudget::give_back() {
  const std::size_t before = in_flight_.fetch_sub(1);
  if (before > limit_ || !any_waiting_.load()) return;
  wake_all();
}

void StoreCallBudget::wait(std::function<void()> wake) {
  {
    std::lock_guard lock(mutex_);
    waiters_.push_back(std::move(wake));
    any_waiting_.store(true);
  }
  if (!spent()) wake_all();  // room came back meanwhile
}

void StoreCallBudget::wake_all() {
  std::vector<std::function<void()>> woken;
  {
    std::lock_guard lock(mutex_);
    woken.swap(waiters_);
    any_waiting_.store(false);
  }
  // Each reads on, and waits again if others took the room first.
  for (auto& wake : woken) wake();
}

std::size_t StoreCallBudget::waiting() const {
  std::lock_guard lock(mutex_);
  return waiters_.size();
}

}  // namespace chatd::net
