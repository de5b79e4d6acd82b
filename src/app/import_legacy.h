#pragma once

#include "app/config.h"

namespace chatd::app {

/// `chatd import-legacy`: copies the old service's chats into the store the
/// settings name (MONGO_URI, else SQLITE_PATH), prints a summary on stdout
/// and returns the exit code: 0 when everything importable is in the store,
/// 1 when the import stopped early (it says why; running it again resumes).
int run_import_legacy(const Config& config);

}  // namespace chatd::app
