// chatd_loadgen: measures a running chatd over loopback. See bench/README.md.

#include <iostream>
#include <stdexcept>

#include "loadgen/big_history.h"
#include "loadgen/chat_load.h"
#include "loadgen/connection.h"
#include "loadgen/idle.h"
#include "loadgen/options.h"
#include "loadgen/process_memory.h"
#include "loadgen/report.h"
#include "loadgen/storm.h"

namespace {

std::string default_scenario(const chatd::loadgen::Options& options) {
  if (options.storm > 0) return "storm_" + std::to_string(options.storm);
  if (options.idle > 0) return "idle_" + std::to_string(options.idle) + "_" + options.protocol;
  if (options.big_history > 0) return "history_" + std::to_string(options.big_history);
  std::string name = "chats" + std::to_string(options.chats);
  if (options.rate > 0) {
    name += "_rate" + std::to_string(static_cast<long long>(options.rate));
  } else {
    name += "_rate0_inflight" + std::to_string(options.inflight);
  }
  if (options.one_way) name += "_oneway";
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace chatd::loadgen;
  int exit_code = 0;
  const auto options = parse_options(argc, argv, exit_code);
  if (!options) return exit_code;

  Target target;
  try {
    target = Target::make(options->host, options->port, options->source_addresses,
                          options->connect_timeout);
    if (options->peer_port != 0) {
      target.peer = std::make_shared<const Target>(Target::make(
          options->host, options->peer_port, options->source_addresses, options->connect_timeout));
    }
  } catch (const std::invalid_argument& error) {
    std::cerr << error.what() << "\n";
    return 2;
  }

  Report report(options->scenario.empty() ? default_scenario(*options) : options->scenario,
                options->system);
  raise_descriptor_limit();  // one descriptor per connection
  const int result = options->storm > 0         ? run_storm(*options, target, report)
                     : options->idle > 0        ? run_idle(*options, target, report)
                     : options->big_history > 0 ? run_big_history(*options, target, report)
                                                : run_chat_load(*options, target, report);
  report.print(std::cout);
  if (!options->json_path.empty()) {
    std::string error;
    if (!report.write_json(options->json_path, error)) {
      std::cerr << error << "\n";
      return 2;
    }
  }
  if (result != 0) std::cerr << "FAILED: see the counts above\n";
  return result;
}
