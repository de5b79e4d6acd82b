#include "net/connection_limits.h"

namespace chatd::net {

namespace {
// Past this many remembered addresses, the idle ones are dropped.
constexpr std::size_t kForgetAbove = 10'000;
}  // namespace

ConnectionLimits::Ticket::~Ticket() {
  limits_.release(*this);
}

void ConnectionLimits::forget_idle_addresses(chat::TokenBucket::Clock::time_point now) {
  // After 5 s a bucket is full again (burst = 5 s of rate): forgetting the
  // address then changes nothing.
  std::erase_if(by_ip_, [&](const auto& item) {
    return item.second.open == 0 && now - item.second.last_seen > std::chrono::seconds(5);
  });
}

std::unique_ptr<ConnectionLimits::Ticket> ConnectionLimits::admit(
    const boost::asio::ip::address& address, std::string& reason) {
  std::string ip = address.to_string();
  std::lock_guard lock(mutex_);
  if (options_.max_total != 0 && total_ >= options_.max_total) {
    reason = "server is at its connection limit";
    return nullptr;
  }
  const auto now = chat::TokenBucket::Clock::now();
  auto entry = by_ip_.find(ip);
  if (entry == by_ip_.end()) {
    if (by_ip_.size() >= kForgetAbove) forget_idle_addresses(now);
    const double rate = options_.new_per_ip_per_second;
    entry = by_ip_.emplace(ip, PerIp{0, chat::TokenBucket(rate, rate * 5, now), now}).first;
  }
  PerIp& per_ip = entry->second;
  per_ip.last_seen = now;
  if (options_.max_per_ip != 0 && per_ip.open >= options_.max_per_ip) {
    reason = "too many connections from this address";
    return nullptr;
  }
  if (!per_ip.new_connections.try_take(now)) {
    reason = "too many new connections from this address";
    return nullptr;
  }
  ++per_ip.open;
  ++total_;
  return std::make_unique<Ticket>(*this, std::move(ip));
}

bool ConnectionLimits::admit_user(Ticket& ticket, const std::string& user, std::string& reason) {
  std::lock_guard lock(mutex_);
  std::size_t& count = by_user_[user];
  if (options_.max_per_user != 0 && count >= options_.max_per_user) {
    if (count == 0) by_user_.erase(user);
    reason = "too many connections for this user";
    return false;
  }
  ++count;
  ticket.user_ = user;
  return true;
}

void ConnectionLimits::release(Ticket& ticket) {
  std::lock_guard lock(mutex_);
  --total_;
  // The address's entry stays, so that connecting and disconnecting in a
  // loop does not refill its bucket; forget_idle_addresses() bounds the map.
  if (auto entry = by_ip_.find(ticket.ip_); entry != by_ip_.end()) --entry->second.open;
  if (!ticket.user_.empty()) {
    if (auto entry = by_user_.find(ticket.user_); entry != by_user_.end() && --entry->second == 0) {
      by_user_.erase(entry);
    }
  }
}

}  // namespace chatd::net
