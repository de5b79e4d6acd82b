#include "store/sqlite/lock_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "store/sqlite/sqlite_handle.h"

namespace chatd::store::sqlite {

LockFile::LockFile(const std::string& db_path) {
  const std::string lock_path = db_path + ".lock";
  fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) throw SqliteError("cannot create lock file '" + lock_path + "'");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd_);
    throw SqliteError("SQLite database '" + db_path +
                      "' is in use by another chatd process (SQLITE_PATH must differ per instance;"
                      " use MONGO_URI to share one store between instances)");
  }
}

// Closing the descriptor releases the lock.
LockFile::~LockFile() {
  ::close(fd_);
}

}  // namespace chatd::store::sqlite
