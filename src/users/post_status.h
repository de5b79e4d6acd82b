#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>
#include <utility>

#include "users/user_directory.h"
#include "util/post_result.h"

namespace chatd::users {

/// Completes `handler` with `status` on the handler's associated executor, or on `fallback`
/// when it has none. Always posted, never invoked inline: the caller may hold a lock or be
/// inside verify(), and UserDirectory promises that the handler runs later.
inline void post_status(UserDirectory::Handler handler, UserStatus status,
                        const boost::asio::any_io_executor& fallback) {
  // post(executor, handler) queues on `fallback` and from there dispatches to the handler's
  // own associated executor. (The handler's executor, an any_completion_executor, cannot be
  // posted to directly: it does not support the blocking.never requirement.)
  boost::asio::post(fallback, boost::asio::append(std::move(handler), status));
}

}  // namespace chatd::users
