// app::parse_dotenv, the parser of the `.env` file chatd reads at start-up. Not network input,
// but a file an operator may copy from anywhere; it must report, never crash.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "app/dotenv.h"
#include "fuzz_check.h"

namespace app = chatd::app;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  std::string errors;
  const auto variables = app::parse_dotenv(text, &errors);
  for (const auto& [key, value] : variables) {
    // Keys are shell-style names: what setenv() will be given.
    FUZZ_CHECK(!key.empty() && !std::isdigit(static_cast<unsigned char>(key.front())));
    for (const char c : key) FUZZ_CHECK(std::isalnum(static_cast<unsigned char>(c)) || c == '_');
  }
  // Reporting errors must not change what is parsed.
  FUZZ_CHECK(app::parse_dotenv(text, nullptr) == variables);
  return 0;
}
