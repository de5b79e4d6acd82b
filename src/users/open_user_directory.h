#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <string>
#include <utility>

#include "users/post_status.h"
#include "users/user_directory.h"

namespace chatd::users {

/// The directory used when USER_SEARCH_URL is unset: every (already validated) name exists.
/// It still completes asynchronously so callers see one behaviour whichever directory is wired.
class OpenUserDirectory final : public UserDirectory {
 public:
  /// `executor` runs handlers that have no associated executor of their own.
  explicit OpenUserDirectory(boost::asio::any_io_executor executor)
      : executor_(std::move(executor)) {}

  // UserDirectory
  void verify(std::string /*username*/, Handler handler) override {
    post_status(std::move(handler), UserStatus::found, executor_);
  }

 private:
  boost::asio::any_io_executor executor_;
};

}  // namespace chatd::users
