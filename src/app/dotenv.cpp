#include "app/dotenv.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace chatd::app {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool valid_key(std::string_view key) {
  if (key.empty() || std::isdigit(static_cast<unsigned char>(key.front()))) return false;
  for (char c : key) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

// Returns false when the quoted value is not closed.
bool unquote(std::string_view raw, std::string& value) {
  const char quote = raw.front();
  std::size_t i = 1;
  value.clear();
  for (; i < raw.size() && raw[i] != quote; ++i) {
    if (quote == '"' && raw[i] == '\\' && i + 1 < raw.size()) {
      const char next = raw[++i];
      value += next == 'n' ? '\n' : next == 't' ? '\t' : next;
    } else {
      value += raw[i];
    }
  }
  if (i == raw.size()) return false;
  const std::string_view rest = trim(raw.substr(i + 1));
  return rest.empty() || rest.front() == '#';
}

}  // namespace

std::map<std::string, std::string> parse_dotenv(std::string_view text, std::string* errors) {
  std::map<std::string, std::string> result;
  std::size_t line_number = 0;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    std::string_view line = trim(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++line_number;
    if (line.empty() || line.front() == '#') continue;
    if (line.starts_with("export ")) line = trim(line.substr(7));
    const std::size_t equals = line.find('=');
    const std::string_view key = trim(line.substr(0, equals));
    if (equals == std::string_view::npos || !valid_key(key)) {
      if (errors) *errors += "line " + std::to_string(line_number) + ": expected KEY=value\n";
      continue;
    }
    const std::string_view raw = trim(line.substr(equals + 1));
    std::string value;
    if (!raw.empty() && (raw.front() == '"' || raw.front() == '\'')) {
      if (!unquote(raw, value)) {
        if (errors) *errors += "line " + std::to_string(line_number) + ": unclosed quote\n";
        continue;
      }
    } else {
      // An unquoted value ends at a " #" comment; `KEY= # note` is empty but
      // `KEY=#ff0000` is a value: a comment needs whitespace before it.
      const std::string_view after_equals = line.substr(equals + 1);
      const bool only_comment = raw.starts_with('#') && after_equals.size() > raw.size();
      const std::size_t comment = only_comment ? 0 : raw.find(" #");
      value = std::string(trim(raw.substr(0, comment)));
    }
    result[std::string(key)] = std::move(value);
  }
  return result;
}

bool load_dotenv(const std::string& path, std::string& error) {
  std::ifstream file(path);
  if (!file) return true;  // no .env: nothing to do
  std::stringstream text;
  text << file.rdbuf();
  std::string errors;
  const auto variables = parse_dotenv(text.str(), &errors);
  if (!errors.empty()) {
    error = path + ": " + errors;
    return false;
  }
  for (const auto& [key, value] : variables) ::setenv(key.c_str(), value.c_str(), 0);
  return true;
}

}  // namespace chatd::app
