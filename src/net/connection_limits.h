#pragma once

#include <boost/asio/ip/address.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "chat/token_bucket.h"

namespace chatd::net {

/// Limits on WebSocket connections; each default with its reason. 0 = no limit.
struct ConnectionLimitOptions {
  /// All connections: one descriptor each, and about 5.8 KB of chatd's memory plus 4 KB of
  /// the kernel's when idle (docs/benchmarks.md, "Idle connections").
  std::size_t max_total = 100'000;
  /// One address: generous, because many users may share a NAT.
  std::size_t max_per_ip = 2'000;
  /// One user: phones, tablets and browser tabs, not a bot farm.
  std::size_t max_per_user = 32;
  /// New connections a second from one address (burst: 5 s worth), so a
  /// reconnect storm from one host cannot monopolise verification.
  double new_per_ip_per_second = 100;
};

/// Counts open connections by address and by user, and new connections by
/// address. Thread-safe. A session holds a Ticket for as long as it counts.
class ConnectionLimits {
 public:
  /// Releases what it holds when destroyed.
  class Ticket {
   public:
    Ticket(ConnectionLimits& limits, std::string ip) : limits_(limits), ip_(std::move(ip)) {}
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;

   private:
    friend class ConnectionLimits;
    ConnectionLimits& limits_;
    std::string ip_;
    std::string user_;
  };

  explicit ConnectionLimits(ConnectionLimitOptions options) : options_(options) {}

  /// Admits a new connection from `ip`, or returns nullptr with `reason` set.
  std::unique_ptr<Ticket> admit(const boost::asio::ip::address& ip, std::string& reason);
  /// Counts the ticket's connection for `user` too, or returns false with `reason` set.
  bool admit_user(Ticket& ticket, const std::string& user, std::string& reason);

 private:
  void release(Ticket& ticket);

  struct PerIp {
    std::size_t open = 0;
    chat::TokenBucket new_connections;
    chat::TokenBucket::Clock::time_point last_seen;
  };
  void forget_idle_addresses(chat::TokenBucket::Clock::time_point now);

  const ConnectionLimitOptions options_;
  std::mutex mutex_;
  std::size_t total_ = 0;
  std::unordered_map<std::string, PerIp> by_ip_;
  std::unordered_map<std::string, std::size_t> by_user_;
};

}  // namespace chatd::net
