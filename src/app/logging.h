#pragma once

#include <string>

namespace chatd::app {

/// How chatd logs (LOG_LEVEL, LOG_FORMAT).
struct LogOptions {
  /// trace, debug, info, warn, error, critical or off. info: start-up, what
  /// is misconfigured and what fails, not one line per message.
  std::string level = "info";
  /// "text" for a person reading a terminal, "json" (one object per line) for
  /// a log collector.
  std::string format = "text";
};

/// Sets up spdlog's default logger on stderr: `format` "text" (human) or
/// "json" (one object per line: ts, level, msg), at `level`.
void setup_logging(const LogOptions& options);

}  // namespace chatd::app
