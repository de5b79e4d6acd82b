#include "store/store.h"

namespace chatd::store {

std::string_view to_string(StoreError error) {
  switch (error) {
    case StoreError::none:
      return "none";
    case StoreError::unavailable:
      return "unavailable";
    case StoreError::overloaded:
      return "overloaded";
    case StoreError::shutting_down:
      return "shutting_down";
  }
  return "unknown";
}

}  // namespace chatd::store
