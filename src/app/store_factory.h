#pragma once

#include <memory>

#include "app/config.h"
#include "store/store.h"

namespace chatd::app {

/// The store the settings ask for: MongoDB when MONGO_URI is set, else the
/// embedded SQLite file at SQLITE_PATH. Shared by the server and by the
/// import-legacy command, so both write the same store the same way.
/// Throws std::runtime_error (a message saying what to fix) when it cannot work.
std::unique_ptr<store::Store> make_store(const Config& config, store::CommitListener listener,
                                         store::CommitObserver observer = {});

}  // namespace chatd::app
