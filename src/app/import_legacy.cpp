#include "app/import_legacy.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "app/store_factory.h"
#include "store/mongo/legacy_import.h"

namespace chatd::app {
namespace {

// How long the target store may take to become reachable before the command
// gives up (the Mongo store connects in the background and retries).
constexpr auto kTargetTimeout = std::chrono::seconds(30);

void print_summary(const store::mongo::ImportSummary& summary, std::ostream& out) {
  out << "import-legacy summary\n"
      << "chats read: " << summary.chats_seen << '\n'
      << "chats imported: " << summary.chats_imported << '\n'
      << "messages imported: " << summary.messages_imported << '\n'
      << "messages already present: " << summary.messages_already_present << '\n'
      << "messages failed: " << summary.messages_failed << '\n';
  for (const auto& [reason, count] : summary.skipped) {
    out << "skipped " << reason << ": " << count << '\n';
  }
  for (const auto& example : summary.examples) out << "example skipped chat: " << example << '\n';
  if (!summary.error.empty()) out << "stopped early: " << summary.error << '\n';
}

}  // namespace

int run_import_legacy(const Config& config) {
  const Config::LegacyImport& legacy = *config.import_legacy;
  try {
    const auto target = make_store(config, {});
    const auto deadline = std::chrono::steady_clock::now() + kTargetTimeout;
    while (!target->ready() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!target->ready()) {
      spdlog::critical("import-legacy: the target store did not become reachable within {} s",
                       std::chrono::duration_cast<std::chrono::seconds>(kTargetTimeout).count());
      return 1;
    }
    const auto summary =
        store::mongo::import_legacy(legacy.from_uri, legacy.from_collection, *target);
    target->drain();
    print_summary(summary, std::cout);
    std::cout.flush();
    return summary.error.empty() ? 0 : 1;
  } catch (const std::exception& e) {
    spdlog::critical("import-legacy: {}", e.what());
    return 1;
  }
}

}  // namespace chatd::app
