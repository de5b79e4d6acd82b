#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "chat/message.h"

namespace chatd::fanout {

/// Carries committed messages and chat events to every connection of their
/// chat, wherever it is. The local implementation hands them to this
/// process's hub; the Redis one (REDIS_URL) also reaches the other instances.
class Fanout {
 public:
  /// Called once, on any thread.
  using DevicesHandler = std::function<void(std::size_t)>;

  virtual ~Fanout() = default;

  /// Starts carrying to other instances (Redis: connects, and keeps
  /// reconnecting); called once, when the I/O threads run.
  virtual void start() = 0;
  /// Stops, after the drain: what was published before is sent first (Redis:
  /// for at most 2 s). Returns once done; the I/O threads must still run.
  virtual void stop() = 0;

  /// Called by the store on its commit thread, once per committed batch, in
  /// commit order: per chat, messages arrive in sequence order.
  virtual void publish(std::span<const chat::MessagePtr> batch) = 0;

  /// Carries an event of a chat (typing, read receipt: a v2 frame, already
  /// serialized) to its connections but `origin`. Best effort.
  virtual void publish_event(const chat::ChatKey& chat, chat::ConnectionId origin,
                             std::shared_ptr<const std::string> frame) = 0;

  /// A connection of `user` to `chat` opened or closed here; `local_devices`
  /// is how many the user has on this instance now. Tells the chat's
  /// connections but `origin` how many the user has on every instance.
  virtual void presence_changed(const chat::ChatKey& chat, chat::ConnectionId origin,
                                const std::string& user, std::size_t local_devices) = 0;

  /// How many connections `user` has to `chat` on every instance.
  virtual void devices(const chat::ChatKey& chat, const std::string& user,
                       DevicesHandler handler) = 0;

  /// Whether devices() answers at once, inside the call (one instance: the
  /// hub's own count), so a caller need not wait for it.
  virtual bool devices_answer_at_once() const { return false; }

  /// "off" (one instance), "ok" or "unavailable" (Redis), for /readyz.
  virtual std::string_view state() const = 0;
};

/// devices() as an Asio operation: the answer comes on the token's executor.
template <typename CompletionToken>
auto async_devices(Fanout& fanout, const chat::ChatKey& chat, const std::string& user,
                   CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(std::size_t)>(
      [&fanout, &chat, &user](auto handler) {
        auto executor = boost::asio::get_associated_executor(handler);
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        fanout.devices(chat, user, [executor, shared](std::size_t devices) {
          boost::asio::post(executor, [shared, devices] { std::move (*shared)(devices); });
        });
      },
      token);
}

}  // namespace chatd::fanout
