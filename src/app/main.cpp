#include <spdlog/spdlog.h>

#include <csignal>
#include <exception>

#include "app/config.h"
#include "app/import_legacy.h"
#include "app/logging.h"
#include "app/server.h"

int main(int argc, char** argv) {
  // Writes to a peer that went away fail with EPIPE instead of killing chatd.
  std::signal(SIGPIPE, SIG_IGN);
  const auto parsed = chatd::app::parse_config(argc, argv);
  if (!parsed.config) return parsed.exit_code;
  const chatd::app::Config& config = *parsed.config;
  chatd::app::setup_logging(config.log);
  if (config.import_legacy) return chatd::app::run_import_legacy(config);
  try {
    chatd::app::Server server(config);
    return server.run();
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return 1;
  }
}
