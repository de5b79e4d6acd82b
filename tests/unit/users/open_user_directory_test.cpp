#include "users/open_user_directory.h"

#include <gtest/gtest.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <optional>

namespace chatd::users {
namespace {

TEST(OpenUserDirectoryTest, EveryNameExistsAndTheAnswerIsPosted) {
  boost::asio::io_context io;
  OpenUserDirectory directory(io.get_executor());
  auto strand = boost::asio::make_strand(io);
  std::optional<UserStatus> status;
  bool on_strand = false;
  directory.verify("anyone", boost::asio::bind_executor(strand, [&](UserStatus result) {
                     status = result;
                     on_strand = strand.running_in_this_thread();
                   }));
  EXPECT_FALSE(status.has_value()) << "must not complete inline";
  io.run();
  EXPECT_EQ(status, UserStatus::found);
  EXPECT_TRUE(on_strand);
}

}  // namespace
}  // namespace chatd::users
