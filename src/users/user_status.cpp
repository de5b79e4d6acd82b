#include "users/user_directory.h"

namespace chatd::users {

std::string_view to_string(UserStatus status) {
  switch (status) {
    case UserStatus::found:
      return "found";
    case UserStatus::not_found:
      return "not_found";
    case UserStatus::unavailable:
      return "unavailable";
  }
  // Only reachable through a cast of an out-of-range integer.
  return "invalid";
}

}  // namespace chatd::users
