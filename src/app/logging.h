#pragma once

#include <string>

namespace chatd::app {

/// Sets up spdlog's default logger on stderr: `format` "text" (human) or
/// "json" (one object per line: ts, level, msg), at `level`.
void setup_logging(const std::string& level, const std::string& format);

}  // namespace chatd::app
