#pragma once

#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/system_executor.hpp>
#include <utility>

namespace chatd::util {

/// Completes `handler` with `results` on the handler's associated executor, or on
/// `fallback` when it has none. Always posted, never invoked inline, even when the caller
/// runs on the handler's own strand in the middle of starting the operation (the user
/// directories promise that; a session starts a lookup from its strand).
///
/// Queued on `fallback` first and dispatched from there to the handler's executor: an
/// any_completion_handler's executor (any_completion_executor) cannot be posted to directly,
/// it does not support the blocking.never requirement that post() asks for.
template <typename Handler, typename Fallback, typename... Results>
void post_result_or(Handler&& handler, const Fallback& fallback, Results&&... results) {
  boost::asio::post(fallback, boost::asio::append(std::forward<Handler>(handler),
                                                  std::forward<Results>(results)...));
}

/// Completes `handler` with `results` on the handler's associated executor (else on the
/// system executor), for a caller on a thread outside that executor (a store thread): one
/// hop, straight to the handler's strand, which queues it since the caller is not running
/// the strand. blocking.never is only preferred (an any_completion_executor cannot be
/// required to honour it), so called on the handler's own strand the handler may run
/// inline: use post_result_or there.
template <typename Handler, typename... Results>
void post_result(Handler&& handler, Results&&... results) {
  auto executor = boost::asio::get_associated_executor(handler, boost::asio::system_executor());
  auto never = boost::asio::prefer(executor, boost::asio::execution::blocking.never,
                                   boost::asio::execution::relationship.fork);
  never.execute(
      [h = std::forward<Handler>(handler), ... r = std::forward<Results>(results)]() mutable {
        std::move(h)(std::move(r)...);
      });
}

}  // namespace chatd::util
