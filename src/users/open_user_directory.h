#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <string>
#include <utility>

#include "users/user_directory.h"
#include "util/post_result.h"

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
    util::post_result_or(std::move(handler), executor_, UserStatus::found);
  }

 private:
  boost::asio::any_io_executor executor_;
};

}  // namespace chatd::users
