// chatd_ceiling: the benchmark's ceiling, the honest reference for how fast
// this machine can relay chat messages. It speaks just enough of chatd's
// protocol v1 for chatd_loadgen to drive it as it drives chatd, and is
// hand-written on purpose: raw epoll, hand-rolled RFC 6455 framing and the
// SQLite C API, so it pays for nothing but the work itself and is the floor
// chatd is measured against. See README.md.
//
//   --mode relay    messages relayed, nothing stored
//   --mode persist  each pass's messages stored in one SQLite transaction
//                   (chatd's schema and settings), delivered after COMMIT

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>

#include "ceiling/event_loop.h"
#include "ceiling/sqlite_log.h"

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  unsigned port = 5701;
  std::string mode = "relay";
  std::string sqlite_path;

  CLI::App app{"chatd_ceiling: the minimal relay chatd is measured against"};
  app.option_defaults()->always_capture_default();
  app.add_option("--host", host, "address to listen on (numeric)");
  app.add_option("--port", port, "port to listen on (0: any)")->check(CLI::Range(0, 65535));
  app.add_option("--mode", mode, "relay: nothing stored; persist: stored in SQLite, then relayed")
      ->check(CLI::IsMember({"relay", "persist"}));
  app.add_option("--sqlite-path", sqlite_path, "--mode persist: the database file");
  CLI11_PARSE(app, argc, argv);
  if (mode == "persist" && sqlite_path.empty()) {
    std::fprintf(stderr, "chatd_ceiling: --mode persist needs --sqlite-path\n");
    return 2;
  }

  // SIGINT and SIGTERM arrive through a descriptor in the loop. Blocked
  // before the checkpoint thread starts, so it inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const int stop_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (stop_fd < 0) {
    std::perror("chatd_ceiling: signalfd");
    return 1;
  }

  try {
    std::unique_ptr<chatd::ceiling::SqliteLog> log;
    if (mode == "persist") log = std::make_unique<chatd::ceiling::SqliteLog>(sqlite_path);
    chatd::ceiling::EventLoop loop(log.get());
    const unsigned listening = loop.listen(host, port);
    std::fprintf(stderr, "chatd_ceiling: %s listening on %s:%u\n", mode.c_str(), host.c_str(),
                 listening);
    loop.run(stop_fd);
    // The loop's last pass committed and wrote what it had; the loop closes
    // the sockets, then the log its database.
  } catch (const std::exception& error) {
    std::fprintf(stderr, "chatd_ceiling: %s\n", error.what());
    return 1;
  }
  ::close(stop_fd);
  return 0;
}
