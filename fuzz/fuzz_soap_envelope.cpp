// users::parse_username and users::classify_answer, which read the user-search service's
// answers (SPEC §1). The service is a separate deployment, so its bodies are treated as
// untrusted. Input: the first byte picks the HTTP status, the rest is the body.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_check.h"
#include "users/soap_envelope.h"

namespace users = chatd::users;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static constexpr std::array<unsigned, 5> kStatuses = {200, 400, 404, 500, 503};
  const unsigned status = kStatuses[data[0] % kStatuses.size()];
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);

  if (const auto username = users::parse_username(body); username && !username->empty()) {
    // Trimmed, as documented.
    for (const char edge : {username->front(), username->back()}) {
      FUZZ_CHECK(edge != ' ' && edge != '\t' && edge != '\r' && edge != '\n');
    }
  }

  const users::UserStatus answer = users::classify_answer(status, body, "alice");
  // Only a 200 can say "found"; only a 200 or a 500 can say "not found" (SPEC §1).
  if (status != 200) FUZZ_CHECK(answer != users::UserStatus::found);
  if (status != 200 && status != 500) FUZZ_CHECK(answer == users::UserStatus::unavailable);
  FUZZ_CHECK(users::to_string(answer) != "invalid");
  return 0;
}
