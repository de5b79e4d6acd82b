#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/system_executor.hpp>
#include <utility>

namespace chatd::util {

/// Completes `handler` with `results` on the handler's associated executor
/// (else on `fallback`),
/// never inline: the caller may be another thread (a store or lookup thread)
/// or the handler's own strand in the middle of starting the operation.
///
/// Why not asio::post(asio::append(handler, result)): in Boost 1.81 the
/// executor associated with an any_completion_handler (any_completion_executor)
/// supports prefer(blocking.never) but not the require() that post() uses.
template <typename Handler, typename Fallback, typename... Results>
void post_result_or(Handler&& handler, const Fallback& fallback, Results&&... results) {
  auto executor = boost::asio::get_associated_executor(handler, fallback);
  auto never = boost::asio::prefer(executor, boost::asio::execution::blocking.never,
                                   boost::asio::execution::relationship.fork);
  never.execute(
      [h = std::forward<Handler>(handler), ... r = std::forward<Results>(results)]() mutable {
        std::move(h)(std::move(r)...);
      });
}

/// As post_result_or, with the system executor for handlers that have none.
template <typename Handler, typename... Results>
void post_result(Handler&& handler, Results&&... results) {
  post_result_or(std::forward<Handler>(handler), boost::asio::system_executor(),
                 std::forward<Results>(results)...);
}

}  // namespace chatd::util
