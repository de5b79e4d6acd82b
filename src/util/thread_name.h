#pragma once

#include <pthread.h>

#include <string>
#include <string_view>

namespace chatd::util {

/// Names the calling thread, as `top -H`, `perf` and `/proc/<pid>/task/*/comm` show it:
/// "chatd-io", "chatd-writer" and so on. Linux keeps at most 15 characters.
inline void name_this_thread(std::string_view name) {
  const std::string kept(name.substr(0, 15));
  pthread_setname_np(pthread_self(), kept.c_str());
}

}  // namespace chatd::util
