#pragma once

#include <map>
#include <string>
#include <string_view>

namespace chatd::app {

/// Parses the text of a `.env` file: `KEY=value` lines, `#` comments, blank
/// lines, an optional leading `export `, values optionally in single quotes
/// (taken literally) or double quotes (with \n, \", \\ escapes). Lines that
/// are none of these are reported in `errors` as "line N: ...".
std::map<std::string, std::string> parse_dotenv(std::string_view text, std::string* errors);

/// Reads `path` if it exists and sets each variable not already in the
/// environment (the real environment wins, as with other dotenv loaders).
/// Returns false with `error` set when the file exists but cannot be parsed.
bool load_dotenv(const std::string& path, std::string& error);

}  // namespace chatd::app
