#include "webhooks/dispatcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "util/thread_name.h"

namespace chatd::webhooks {
namespace {

/// Events read from the outbox at once: the oldest kPerChat of kPageChats chats.
constexpr std::size_t kPageChats = 32;
constexpr std::size_t kPerChat = 16;
constexpr std::size_t kPage = kPageChats * kPerChat;
/// How often the outbox is read without a wake-up: another instance's
/// commits (MongoDB), retries that came due, a lost lease taken back.
constexpr auto kPollInterval = std::chrono::seconds(1);
/// How often the backlog gauges are refreshed (a count over the outbox index).
constexpr auto kBacklogInterval = std::chrono::seconds(1);
/// After a failed store call, the next try.
constexpr auto kStoreRetry = std::chrono::milliseconds(500);
/// Delivered events are settled in one write once this many are waiting, or
/// once the oldest has waited kSettleDelay: a write per event would cost the
/// store more than the POST. A crash before the write sends them again.
constexpr std::size_t kSettleBatch = 128;
constexpr auto kSettleDelay = std::chrono::milliseconds(20);
/// While the outbox holds more than was read: the soonest next read.
constexpr auto kReadAgain = std::chrono::milliseconds(10);

const char* const kOutcomes[] = {"2xx", "4xx", "5xx", "timeout", "network"};
constexpr const char* kDeliveriesHelp = "Webhook events by how their last attempt ended.";

}  // namespace

Dispatcher::Dispatcher(boost::asio::io_context& io, store::Store& store, WebhookOptions options,
                       metrics::Registry& registry, std::string instance)
    : io_(io),
      store_(store),
      options_(std::move(options)),
      instance_(std::move(instance)),
      poster_(io, options_.url, options_.secret, options_.timeout, options_.ca_file),
      delivered_total_(registry.counter("chatd_webhook_deliveries_total", kDeliveriesHelp,
                                        {{"result", "delivered"}})),
      retried_total_(registry.counter("chatd_webhook_deliveries_total", kDeliveriesHelp,
                                      {{"result", "retried"}})),
      failed_total_(registry.counter("chatd_webhook_deliveries_total", kDeliveriesHelp,
                                     {{"result", "failed"}})),
      attempt_seconds_(registry.histogram("chatd_webhook_delivery_seconds",
                                          "Duration of one webhook POST, answer included.",
                                          metrics::exponential_buckets(0.001, 2.5, 12))),
      backlog_(registry.gauge("chatd_webhook_backlog",
                              "Messages with webhook events waiting in the store.")),
      oldest_seconds_(registry.gauge("chatd_webhook_oldest_pending_seconds",
                                     "Age of the oldest webhook event waiting; 0 when none.")),
      failed_events_(registry.gauge("chatd_webhook_failed_events",
                                    "Webhook events kept as failed after their last attempt.")),
      sender_(registry.gauge("chatd_webhook_sender",
                             "1 while this instance holds the webhook sender's lease.")) {
  for (const char* outcome : kOutcomes) {
    attempts_total_[outcome] = &registry.counter(
        "chatd_webhook_attempts_total", "Webhook POSTs, by outcome.", {{"outcome", outcome}});
  }
}

Dispatcher::~Dispatcher() {
  stop();
}

void Dispatcher::start() {
  thread_ = std::thread([this] {
    util::name_this_thread("chatd-webhooks");
    loop();
  });
}

void Dispatcher::wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  changed_.notify_one();
}

void Dispatcher::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  changed_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void Dispatcher::list_failed(std::size_t limit, std::function<void(FailedList)> done) {
  std::lock_guard lock(mutex_);
  calls_.push_back(
      [limit, done = std::move(done)](store::Outbox& outbox) { done(outbox.failed(limit)); });
  changed_.notify_one();
}

void Dispatcher::retry_failed(std::string event_id, std::function<void(std::optional<bool>)> done) {
  std::lock_guard lock(mutex_);
  calls_.push_back([this, id = std::move(event_id), done = std::move(done)](store::Outbox& outbox) {
    const auto retried = outbox.retry(id);
    if (retried && *retried) poll_at_ = Clock::now();  // read it again at once
    done(retried);
  });
  changed_.notify_one();
}

void Dispatcher::loop() {
  std::unique_ptr<store::Outbox> outbox;
  try {
    outbox = store_.make_outbox();
  } catch (const std::exception& e) {
    spdlog::error("webhooks: cannot open the outbox: {}; no webhook is sent", e.what());
    return;
  }
  spdlog::info("webhooks: sending events to {}", options_.url);
  bool woken = true;
  for (;;) {
    const Clock::time_point next = pass(*outbox, woken);
    std::vector<std::function<void(store::Outbox&)>> calls;
    {
      std::unique_lock lock(mutex_);
      changed_.wait_until(
          lock, next, [&] { return woken_ || stopping_ || !outcomes_.empty() || !calls_.empty(); });
      woken = std::exchange(woken_, false);
      calls.swap(calls_);
      if (stopping_) {
        // Let the POSTs in flight end (each within WEBHOOK_TIMEOUT_MS), then
        // settle what they delivered; nothing new starts.
        // (Bounded: with the I/O threads already stopped they never end.)
        changed_.wait_for(lock, options_.timeout + std::chrono::seconds(1),
                          [&] { return outcomes_.size() >= in_flight_; });
        lock.unlock();
        take_outcomes();
        settle(*outbox);
        for (auto& call : calls) call(*outbox);
        return;
      }
    }
    for (auto& call : calls) call(*outbox);
  }
}

Dispatcher::Clock::time_point Dispatcher::pass(store::Outbox& outbox, bool woken) {
  const auto now = Clock::now();
  if (now >= lease_renew_at_) {
    const bool held = outbox.hold_lease(instance_, options_.lease);
    if (held != leased_) {
      spdlog::info("webhooks: this instance {} the sender's lease", held ? "holds" : "lost");
      if (!held) forget_queues();
    }
    leased_ = held;
    sender_.set(held ? 1 : 0);
    lease_renew_at_ = now + (held ? options_.lease / 3 : kStoreRetry * 2);
  }
  take_outcomes();
  const std::size_t to_settle = delivered_.size() + failed_.size();
  if (to_settle >= kSettleBatch || (to_settle > 0 && now >= settle_at_)) settle(outbox);
  // Read on soon while the last page was full and few events wait here (at
  // most every kReadAgain: each read costs the store a query per chat).
  const bool starving = more_pending_ && queued_ < kPage / 2 && now >= read_again_at_;
  if (leased_ && (woken || starving || now >= poll_at_) && held_.size() <= kMaxHeld - 2 * kPage) {
    read_pending(outbox);
    poll_at_ = now + kPollInterval;
    read_again_at_ = now + kReadAgain;
  }
  if (leased_) start_posts();
  if (now >= backlog_at_) {
    refresh_backlog(outbox);
    backlog_at_ = now + kBacklogInterval;
  }
  Clock::time_point next = std::min({lease_renew_at_, poll_at_, backlog_at_});
  if (!delivered_.empty() || !failed_.empty()) next = std::min(next, settle_at_);
  if (leased_ && more_pending_ && queued_ < kPage / 2 && held_.size() <= kMaxHeld - 2 * kPage) {
    next = std::min(next, read_again_at_);
  }
  // A chat's next attempt, once its backoff ends; at WEBHOOK_MAX_IN_FLIGHT an
  // outcome wakes the thread instead (else it would spin on the ready ones).
  if (leased_ && in_flight_ < options_.max_in_flight) {
    for (const auto& [key, queue] : chats_) {
      if (!queue.in_flight && !queue.events.empty()) next = std::min(next, queue.ready_at);
    }
  }
  return next;
}

void Dispatcher::read_pending(store::Outbox& outbox) {
  std::size_t added = 0;
  auto queue = [this, &added](Event event) {
    if (!held_.insert(event.id).second) return;  // read before, not settled yet
    const std::string key = event.chat.str();
    if (event.bit != store::kHookRead) {
      auto& high = read_up_to_[key];
      high = std::max(high, event.seq);
    }
    chats_[key].events.push_back(Queued{std::move(event), 0});
    ++queued_;
    ++added;
  };
  // Per chat: read past what is held; skip a chat with enough queued already.
  const store::Outbox::ReadFrom after =
      [this](const chat::ChatKey& chat) -> std::optional<std::uint64_t> {
    const std::string& key = chat.str();
    if (const auto found = chats_.find(key);
        found != chats_.end() && found->second.events.size() >= kPerChat) {
      return std::nullopt;
    }
    const auto high = read_up_to_.find(key);
    return high == read_up_to_.end() ? 0 : high->second;
  };
  more_pending_ = last_page_full_ = false;
  if (options_.message_events != 0) {
    const std::size_t chats = std::max(kPageChats, 2 * options_.max_in_flight);
    const auto page = outbox.pending(chats, kPerChat, after);
    if (!page) return;  // the store failed; the next poll tries again
    // As many chats as asked for, or a chat with as many events: there may be more.
    std::map<std::string_view, std::size_t> per_chat;
    for (const auto& message : *page) ++per_chat[message->chat.str()];
    more_pending_ = last_page_full_ =
        per_chat.size() >= chats ||
        std::any_of(per_chat.begin(), per_chat.end(),
                    [](const auto& entry) { return entry.second >= kPerChat; });
    for (const auto& message : *page) {
      for (const std::uint8_t bit : store::kHookBits) {
        if ((message->hooks & bit) != 0) queue(message_event(*message, bit, options_.include_text));
      }
    }
  }
  if (options_.read_events) {
    const auto reads = outbox.pending_reads(kPage / 4);
    if (!reads) return;
    for (const auto& read : *reads) queue(read_event(read));
  }
  if (added == 0) more_pending_ = false;  // all of it held already: wait for settles
}

void Dispatcher::start_posts() {
  const auto now = Clock::now();
  for (auto& [key, queue] : chats_) {
    if (in_flight_ >= options_.max_in_flight) return;
    if (queue.in_flight || queue.events.empty() || queue.ready_at > now) continue;
    Queued& head = queue.events.front();
    ++head.attempts;
    queue.in_flight = true;
    ++in_flight_;
    if (head.attempts == 1) --queued_;
    poster_.post(head.event, head.attempts, [this, chat = key](Attempt attempt) {
      bool first = false;
      {
        std::lock_guard lock(mutex_);
        first = outcomes_.empty() || stopping_;  // later ones find the thread woken already
        outcomes_.push_back(Outcome{chat, std::move(attempt)});
      }
      if (first) changed_.notify_one();
    });
  }
}

void Dispatcher::take_outcomes() {
  std::vector<Outcome> outcomes;
  {
    std::lock_guard lock(mutex_);
    outcomes.swap(outcomes_);
  }
  const auto now = Clock::now();
  for (auto& outcome : outcomes) {
    --in_flight_;
    attempt_seconds_.observe(std::chrono::duration<double>(outcome.attempt.took).count());
    if (const auto counter = attempts_total_.find(outcome.attempt.outcome);
        counter != attempts_total_.end()) {
      counter->second->inc();
    }
    const auto found = chats_.find(outcome.chat);
    if (found == chats_.end()) continue;  // the lease was lost meanwhile
    ChatQueue& queue = found->second;
    queue.in_flight = false;
    if (queue.events.empty()) continue;
    Queued& head = queue.events.front();
    if (outcome.attempt.delivered) {
      delivered_total_.inc();
      if (delivered_.empty() && failed_.empty()) settle_at_ = now + kSettleDelay;
      delivered_.push_back(
          store::SettledHook{head.event.chat, head.event.seq, head.event.bit, head.event.reader});
      settling_ids_.push_back(head.event.id);
      queue.events.pop_front();
      queue.ready_at = now;
    } else if (head.attempts >= options_.max_attempts) {
      failed_total_.inc();
      if (delivered_.empty() && failed_.empty()) settle_at_ = now + kSettleDelay;
      spdlog::warn("webhooks: event {} failed after {} attempts ({}); kept as failed",
                   head.event.id, head.attempts, outcome.attempt.error);
      failed_.push_back(store::FailedEvent{.id = head.event.id,
                                           .type = head.event.type,
                                           .chat = head.event.chat,
                                           .seq = head.event.seq,
                                           .bit = head.event.bit,
                                           .reader = head.event.reader,
                                           .attempts = head.attempts,
                                           .last_error = outcome.attempt.error,
                                           .failed_ms = chat::now_ms(),
                                           .body = head.event.body});
      settling_ids_.push_back(head.event.id);
      queue.events.pop_front();
      queue.ready_at = now;
    } else {
      retried_total_.inc();
      spdlog::debug("webhooks: event {} attempt {} failed: {}", head.event.id, head.attempts,
                    outcome.attempt.error);
      queue.ready_at = now + backoff(head.attempts);
    }
    if (queue.events.empty()) chats_.erase(found);
  }
}

void Dispatcher::settle(store::Outbox& outbox) {
  if (delivered_.empty() && failed_.empty()) return;
  if (!outbox.settle(delivered_, failed_)) {  // kept; tried again a little later
    settle_at_ = Clock::now() + kStoreRetry;
    return;
  }
  for (const auto& id : settling_ids_) held_.erase(id);
  // A chat with nothing held any more is read from its oldest pending event
  // again (an event retried through the admin API may be older).
  for (auto it = read_up_to_.begin(); it != read_up_to_.end();) {
    it = chats_.contains(it->first) ? std::next(it) : read_up_to_.erase(it);
  }
  // Room again: what the last full page left behind can be read now.
  if (last_page_full_) more_pending_ = true;
  delivered_.clear();
  failed_.clear();
  settling_ids_.clear();
}

void Dispatcher::refresh_backlog(store::Outbox& outbox) {
  const auto backlog = outbox.backlog();
  if (!backlog) return;
  backlog_.set(static_cast<std::int64_t>(backlog->events));
  failed_events_.set(static_cast<std::int64_t>(backlog->failed));
  const std::int64_t age_ms = backlog->oldest_ms == 0 ? 0 : chat::now_ms() - backlog->oldest_ms;
  oldest_seconds_.set(std::max<std::int64_t>(0, age_ms / 1000));
}

void Dispatcher::forget_queues() {
  read_up_to_.clear();
  queued_ = 0;  // what is kept is in flight, attempted already
  // Another instance sends from now on; what is in flight still ends here.
  for (auto it = chats_.begin(); it != chats_.end();) {
    if (it->second.in_flight) {
      auto& events = it->second.events;
      for (std::size_t i = 1; i < events.size(); ++i) held_.erase(events[i].event.id);
      if (events.size() > 1) events.erase(events.begin() + 1, events.end());
      ++it;
    } else {
      for (const auto& queued : it->second.events) held_.erase(queued.event.id);
      it = chats_.erase(it);
    }
  }
}

std::chrono::milliseconds Dispatcher::backoff(std::uint32_t attempts) {
  const auto min = options_.backoff_min.count();
  const auto max = options_.backoff_max.count();
  double wait = static_cast<double>(min);
  for (std::uint32_t i = 1; i < attempts && wait < static_cast<double>(max); ++i) wait *= 2;
  wait = std::min(wait, static_cast<double>(max));
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(wait * jitter(random_)));
}

}  // namespace chatd::webhooks
