// chatd_ceiling's share of chatd's protocol v1, hand-written on purpose (no
// JSON library): chatd_ceiling is the floor chatd is measured against, so it
// validates and copies the bytes of a message and does nothing more.
#include "ceiling/chat_frames.h"

#include <sys/random.h>

#include <charconv>
#include <cstring>
#include <ctime>

#include "ceiling/websocket.h"

namespace chatd::ceiling {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr int kMaxDepth = 64;

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

class Scanner {
 public:
  Scanner(const char* p, const char* end) : p_(p), end_(end) {}

  bool at_end() {
    skip_space();
    return p_ == end_;
  }

  bool consume(char c) {
    skip_space();
    if (p_ == end_ || *p_ != c) return false;
    ++p_;
    return true;
  }

  bool peek(char c) {
    skip_space();
    return p_ != end_ && *p_ == c;
  }

  /// A string, the opening quote next; `raw` is its contents, escapes kept.
  bool string(std::string_view& raw) {
    if (!consume('"')) return false;
    const char* start = p_;
    while (p_ != end_) {
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        raw = std::string_view(start, static_cast<std::size_t>(p_ - start));
        ++p_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (!escape()) return false;
      } else {
        ++p_;
      }
    }
    return false;
  }

  bool value(int depth) {
    if (depth > kMaxDepth) return false;
    skip_space();
    if (p_ == end_) return false;
    switch (*p_) {
      case '"': {
        std::string_view ignored;
        return string(ignored);
      }
      case '{':
        return object(depth, nullptr);
      case '[':
        ++p_;
        if (consume(']')) return true;
        do {
          if (!value(depth + 1)) return false;
        } while (consume(','));
        return consume(']');
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }

  /// An object; when `text` is given, the raw contents of its (last) string
  /// member "text" go there.
  bool object(int depth, std::string_view* text) {
    if (!consume('{')) return false;
    if (consume('}')) return true;
    do {
      std::string_view key;
      if (!string(key) || !consume(':')) return false;
      if (text != nullptr && key == "text" && peek('"')) {
        if (!string(*text)) return false;
      } else if (!value(depth + 1)) {
        return false;
      }
    } while (consume(','));
    return consume('}');
  }

 private:
  void skip_space() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }

  bool hex4(std::uint32_t& value) {
    if (end_ - p_ < 4) return false;
    value = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = *p_++;
      const int digit = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;
      if (digit < 0) return false;
      value = (value << 4) | static_cast<std::uint32_t>(digit);
    }
    return true;
  }

  /// An escape, at its backslash. A \u escape of a high surrogate must be
  /// followed by one of a low surrogate, as a JSON parser that produces
  /// UTF-8 (chatd's) requires.
  bool escape() {
    ++p_;
    if (p_ == end_) return false;
    switch (*p_++) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        return true;
      case 'u': {
        std::uint32_t unit = 0;
        if (!hex4(unit)) return false;
        if (unit >= 0xDC00 && unit <= 0xDFFF) return false;
        if (unit < 0xD800 || unit > 0xDBFF) return true;
        if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
        p_ += 2;
        std::uint32_t low = 0;
        return hex4(low) && low >= 0xDC00 && low <= 0xDFFF;
      }
      default:
        return false;
    }
  }

  bool literal(std::string_view word) {
    if (static_cast<std::size_t>(end_ - p_) < word.size() ||
        std::memcmp(p_, word.data(), word.size()) != 0) {
      return false;
    }
    p_ += word.size();
    return true;
  }

  bool digits() {
    const char* start = p_;
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    return p_ != start;
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool number() {
    if (p_ != end_ && *p_ == '-') ++p_;
    if (p_ == end_) return false;
    if (*p_ == '0') {
      ++p_;
    } else if (!digits()) {
      return false;
    }
    if (p_ != end_ && *p_ == '.') {
      ++p_;
      if (!digits()) return false;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (!digits()) return false;
    }
    return true;
  }

  const char* p_;
  const char* end_;
};

void append_utf8(std::string& out, std::uint32_t code_point) {
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

std::uint32_t read_hex4(const char* p) {
  std::uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    const char c = p[i];
    const int digit = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    value = (value << 4) | static_cast<std::uint32_t>(digit);
  }
  return value;
}

void write_hex(char* out, std::uint64_t value, int digits) {
  for (int i = digits; i-- > 0;) {
    out[i] = kHex[value & 0xF];
    value >>= 4;
  }
}

void write_decimal(char* out, int value, int digits) {
  for (int i = digits; i-- > 0;) {
    out[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

}  // namespace

bool find_text(std::string_view payload, std::string_view& raw_text) {
  Scanner scanner(payload.data(), payload.data() + payload.size());
  const char* none = nullptr;
  raw_text = std::string_view(none, 0);
  if (!scanner.object(0, &raw_text) || !scanner.at_end()) return false;
  return raw_text.data() != nullptr;
}

void unescape_json(std::string_view raw, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < raw.size();) {
    const std::size_t slash = raw.find('\\', i);
    if (slash == std::string_view::npos) {
      out.append(raw.substr(i));
      break;
    }
    out.append(raw.substr(i, slash - i));
    const char kind = raw[slash + 1];
    i = slash + 2;
    switch (kind) {
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        std::uint32_t code_point = read_hex4(raw.data() + i);
        i += 4;
        if (code_point >= 0xD800 && code_point <= 0xDBFF) {  // find_text checked the pair
          const std::uint32_t low = read_hex4(raw.data() + i + 2);
          i += 6;
          code_point = 0x10000 + ((code_point - 0xD800) << 10) + (low - 0xDC00);
        }
        append_utf8(out, code_point);
        break;
      }
      default:  // " \ /
        out.push_back(kind);
        break;
    }
  }
}

IdMaker::IdMaker() {
  unsigned char random[8] = {};
  if (getrandom(random, sizeof random, 0) != static_cast<ssize_t>(sizeof random)) {
    const auto seed = static_cast<std::uint64_t>(std::time(nullptr));
    std::memcpy(random, &seed, sizeof random);
  }
  for (int i = 0; i < 5; ++i) {
    random_hex_[2 * i] = kHex[random[i] >> 4];
    random_hex_[2 * i + 1] = kHex[random[i] & 0xF];
  }
  counter_ = (std::uint32_t{random[5]} << 16) | (std::uint32_t{random[6]} << 8) | random[7];
}

void IdMaker::next(std::int64_t now_ms, char* out) {
  const std::int64_t seconds = now_ms / 1000;
  if (seconds != seconds_) {
    seconds_ = seconds;
    write_hex(seconds_hex_.data(), static_cast<std::uint32_t>(seconds), 8);
  }
  std::memcpy(out, seconds_hex_.data(), 8);
  std::memcpy(out + 8, random_hex_.data(), 10);
  write_hex(out + 18, counter_++ & 0xFFFFFF, 6);
}

void Timestamp::set(std::int64_t now_ms) {
  if (now_ms == ms_) return;
  ms_ = now_ms;
  const std::int64_t seconds = now_ms / 1000;
  if (seconds != seconds_) {
    seconds_ = seconds;
    const auto time = static_cast<std::time_t>(seconds);
    std::tm utc{};
    gmtime_r(&time, &utc);
    char* t = text_.data();
    write_decimal(t, utc.tm_year + 1900, 4);
    t[4] = '-';
    write_decimal(t + 5, utc.tm_mon + 1, 2);
    t[7] = '-';
    write_decimal(t + 8, utc.tm_mday, 2);
    t[10] = 'T';
    write_decimal(t + 11, utc.tm_hour, 2);
    t[13] = ':';
    write_decimal(t + 14, utc.tm_min, 2);
    t[16] = ':';
    write_decimal(t + 17, utc.tm_sec, 2);
    t[19] = '.';
    t[23] = 'Z';
  }
  write_decimal(text_.data() + 20, static_cast<int>(now_ms % 1000), 3);
}

std::size_t append_message_frame(std::string& out, std::string_view sender,
                                 std::string_view raw_text, std::string_view id, std::uint64_t seq,
                                 std::string_view ts) {
  constexpr std::string_view kSender = R"({"sender":")";
  constexpr std::string_view kText = R"(","text":")";
  constexpr std::string_view kId = R"(","type":"message","id":")";
  constexpr std::string_view kSeq = R"(","seq":)";
  constexpr std::string_view kTs = R"(,"ts":")";
  constexpr std::string_view kEnd = R"("})";
  char seq_digits[20];
  const auto seq_end = std::to_chars(seq_digits, seq_digits + sizeof seq_digits, seq).ptr;
  const auto seq_size = static_cast<std::size_t>(seq_end - seq_digits);
  const std::size_t size = kSender.size() + sender.size() + kText.size() + raw_text.size() +
                           kId.size() + id.size() + kSeq.size() + seq_size + kTs.size() +
                           ts.size() + kEnd.size();
  const std::size_t header = ws::header_size(size);

  // One resize and plain copies: this is the hot path of every message.
  const std::size_t start = out.size();
  out.resize(start + header + size);
  char* p = out.data() + start;
  ws::write_header(p, ws::kText, size);
  p += header;
  const auto put = [&p](std::string_view part) {
    std::memcpy(p, part.data(), part.size());
    p += part.size();
  };
  put(kSender);
  put(sender);
  put(kText);
  const auto text_at = static_cast<std::size_t>(p - out.data());
  put(raw_text);
  put(kId);
  put(id);
  put(kSeq);
  put(std::string_view(seq_digits, seq_size));
  put(kTs);
  put(ts);
  put(kEnd);
  return text_at;
}

void append_error_frame(std::string& out, std::string_view code, std::string_view message) {
  std::string payload;
  payload.reserve(48 + code.size() + message.size());
  payload.append(R"({"type":"error","code":")")
      .append(code)
      .append(R"(","message":")")
      .append(message)
      .append(R"("})");
  ws::append_frame(out, ws::kText, payload);
}

}  // namespace chatd::ceiling
