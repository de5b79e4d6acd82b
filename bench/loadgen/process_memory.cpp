#include "loadgen/process_memory.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace chatd::loadgen {
namespace {

/// "VmRSS:     1234 kB" -> 1234 * 1024.
bool read_kib_field(const std::string& line, const char* name, std::uint64_t& bytes) {
  const std::string key = std::string(name) + ":";
  if (line.rfind(key, 0) != 0) return false;
  bytes = std::strtoull(line.c_str() + key.size(), nullptr, 10) * 1024;
  return true;
}

std::optional<ProcessMemory> read_status(const std::string& path) {
  std::ifstream file(path);
  if (!file) return std::nullopt;
  ProcessMemory memory;
  bool found = false;
  for (std::string line; std::getline(file, line);) {
    found |= read_kib_field(line, "VmRSS", memory.rss);
    read_kib_field(line, "RssAnon", memory.rss_anon);
  }
  if (!found) return std::nullopt;
  return memory;
}

/// The inode of the socket listening on `port` in one of /proc/net/tcp{,6}; 0 if none.
unsigned long listening_inode(const char* table, unsigned port) {
  std::ifstream file(table);
  std::string line;
  std::getline(file, line);  // header
  while (std::getline(file, line)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout;
    unsigned long inode = 0;
    if (!(fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
          timeout >> inode)) {
      continue;
    }
    const auto colon = local.rfind(':');
    if (colon == std::string::npos || state != "0A") continue;  // 0A: LISTEN
    if (std::strtoul(local.c_str() + colon + 1, nullptr, 16) == port && inode != 0) return inode;
  }
  return 0;
}

}  // namespace

std::optional<ProcessMemory> read_process_memory(pid_t pid) {
  return read_status("/proc/" + std::to_string(pid) + "/status");
}

std::optional<ProcessMemory> read_own_memory() {
  return read_status("/proc/self/status");
}

pid_t find_listener_pid(unsigned port) {
  unsigned long inode = listening_inode("/proc/net/tcp", port);
  if (inode == 0) inode = listening_inode("/proc/net/tcp6", port);
  if (inode == 0) return 0;
  const std::string wanted = "socket:[" + std::to_string(inode) + "]";
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  pid_t found = 0;
  while (const dirent* entry = ::readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(entry->d_name));
    if (pid <= 0) continue;
    const std::string fd_dir = "/proc/" + std::string(entry->d_name) + "/fd";
    DIR* fds = ::opendir(fd_dir.c_str());
    if (fds == nullptr) continue;  // gone, or not ours to see
    while (const dirent* fd = ::readdir(fds)) {
      char target[64];
      const std::string link = fd_dir + "/" + fd->d_name;
      const ssize_t length = ::readlink(link.c_str(), target, sizeof target - 1);
      if (length > 0 && wanted == std::string_view(target, static_cast<std::size_t>(length))) {
        found = pid;
        break;
      }
    }
    ::closedir(fds);
    if (found != 0) break;
  }
  ::closedir(proc);
  return found;
}

std::uint64_t raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur;
}

std::optional<std::uint64_t> tcp_kernel_memory() {
  std::ifstream file("/proc/net/sockstat");
  for (std::string line; std::getline(file, line);) {
    if (line.rfind("TCP:", 0) != 0) continue;
    const auto at = line.find(" mem ");
    if (at == std::string::npos) return std::nullopt;
    return std::strtoull(line.c_str() + at + 5, nullptr, 10) *
           static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  }
  return std::nullopt;
}

}  // namespace chatd::loadgen
