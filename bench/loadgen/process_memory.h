#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace chatd::loadgen {

/// A process's resident memory, from /proc/<pid>/status, in bytes.
struct ProcessMemory {
  std::uint64_t rss = 0;       ///< VmRSS: RssAnon + RssFile + RssShmem
  std::uint64_t rss_anon = 0;  ///< RssAnon: the heap and stacks, what connections cost
};

/// Reads /proc/<pid>/status; nothing when the process is gone or unreadable.
std::optional<ProcessMemory> read_process_memory(pid_t pid);

/// This process's own.
std::optional<ProcessMemory> read_own_memory();

/// The process holding the TCP socket that listens on `port` (IPv4 or IPv6),
/// found through /proc/net/tcp{,6} and the /proc/<pid>/fd links; 0 when none
/// is visible (another user's process needs root to be seen).
pid_t find_listener_pid(unsigned port);

/// Raises this process's soft descriptor limit to its hard limit; returns the limit now.
std::uint64_t raise_descriptor_limit();

/// Kernel memory of every TCP socket on the machine (the `mem` pages of
/// /proc/net/sockstat), in bytes: socket buffers are not in any process's RSS.
std::optional<std::uint64_t> tcp_kernel_memory();

}  // namespace chatd::loadgen
