#pragma once

#include <string>

namespace chatd::store::sqlite {

/// An exclusive lock on `<db>.lock`, held for the life of this object: the
/// writer's sequence cache is only right while it is the file's only writer.
class LockFile {
 public:
  /// Takes the lock, or throws SqliteError naming the file (and saying what to
  /// change when another chatd holds it).
  explicit LockFile(const std::string& db_path);
  ~LockFile();
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;

 private:
  int fd_;
};

}  // namespace chatd::store::sqlite
