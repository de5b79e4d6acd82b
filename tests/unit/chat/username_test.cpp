#include "chat/username.h"

#include <gtest/gtest.h>

#include <string>

namespace chatd::chat {
namespace {

bool valid(std::string_view name) {
  return !validate_username(name).has_value();
}

TEST(ValidateUsername, AcceptsAsciiNames) {
  EXPECT_TRUE(valid("alice"));
  EXPECT_TRUE(valid("Bob42"));
  EXPECT_TRUE(valid("a"));
  EXPECT_TRUE(valid("a_b"));
  EXPECT_TRUE(valid("first last"));
  EXPECT_TRUE(valid("team/ops"));
  EXPECT_TRUE(valid("1:a"));
  EXPECT_TRUE(valid("~!@#$%^&*()-+=[]{};'\",.<>?"));
}

TEST(ValidateUsername, AcceptsUtf8Names) {
  EXPECT_TRUE(valid("\xC3\xA9"));                  // é (2 bytes)
  EXPECT_TRUE(valid("Ren\xC3\xA9"));               // René
  EXPECT_TRUE(valid("\xF0\x9F\x98\x80"));          // 😀 (4 bytes)
  EXPECT_TRUE(valid("\xE5\xBC\xA0\xE4\xB8\x89"));  // 张三 (CJK, 3 bytes each)
  EXPECT_TRUE(valid("\xEF\xBF\xBD"));              // U+FFFD, highest 3-byte non-surrogate region
  EXPECT_TRUE(valid("\xF4\x8F\xBF\xBF"));          // U+10FFFF, the last code point
  EXPECT_TRUE(valid("\xC2\xA0"));                  // U+00A0, first code point after C1
}

TEST(ValidateUsername, LengthLimitIsSixtyFourBytes) {
  EXPECT_EQ(kMaxUsernameBytes, 64u);
  EXPECT_TRUE(valid(std::string(64, 'x')));
  EXPECT_FALSE(valid(std::string(65, 'x')));
  EXPECT_FALSE(valid(std::string(1000, 'x')));
}

TEST(ValidateUsername, LengthIsCountedInBytesNotCharacters) {
  // 16 emoji = 64 bytes: ok. 17 emoji = 68 bytes but only 17 characters: rejected.
  std::string sixteen;
  for (int i = 0; i < 16; ++i) sixteen += "\xF0\x9F\x98\x80";
  ASSERT_EQ(sixteen.size(), 64u);
  EXPECT_TRUE(valid(sixteen));
  EXPECT_FALSE(valid(sixteen + "\xF0\x9F\x98\x80"));
  // 63 ASCII bytes followed by a 2-byte character crosses the limit.
  std::string crossing(63, 'x');
  crossing.append("\xC3\xA9");
  EXPECT_FALSE(valid(crossing));
}

TEST(ValidateUsername, RejectsEmpty) {
  const auto reason = validate_username("");
  ASSERT_TRUE(reason.has_value());
  EXPECT_FALSE(reason->empty());
}

TEST(ValidateUsername, RejectsControlCharacters) {
  EXPECT_FALSE(valid("a\nb"));
  EXPECT_FALSE(valid("a\tb"));
  EXPECT_FALSE(valid("a\rb"));
  EXPECT_FALSE(valid("\n"));
  EXPECT_FALSE(valid(std::string("a\0b", 3)));  // embedded NUL
  EXPECT_FALSE(valid(std::string("\0", 1)));
  EXPECT_FALSE(
      valid("a\x1F"
            "b"));
  EXPECT_FALSE(
      valid("a\x7F"
            "b"));  // DEL
  EXPECT_FALSE(
      valid("a\xC2\x85"
            "b"));  // U+0085 NEL (C1) as UTF-8
  EXPECT_FALSE(
      valid("a\xC2\x80"
            "b"));  // U+0080, first C1
  EXPECT_FALSE(
      valid("a\xC2\x9F"
            "b"));  // U+009F, last C1
}

TEST(ValidateUsername, RejectsInvalidUtf8) {
  EXPECT_FALSE(valid("\x80"));  // lone continuation byte
  EXPECT_FALSE(
      valid("ab\xBF"
            "cd"));                         // continuation byte in the middle
  EXPECT_FALSE(valid("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(valid("\xE0\x80\xAF"));      // overlong '/' in 3 bytes
  EXPECT_FALSE(valid("\xF0\x80\x80\xAF"));  // overlong '/' in 4 bytes
  EXPECT_FALSE(valid("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(valid("\xED\xBF\xBF"));      // surrogate U+DFFF
  EXPECT_FALSE(valid("\xC3"));              // truncated 2-byte sequence
  EXPECT_FALSE(valid("ab\xE5\xBC"));        // truncated 3-byte sequence at the end
  EXPECT_FALSE(valid("\xF0\x9F\x98"));      // truncated 4-byte sequence
  EXPECT_FALSE(
      valid("\xE5"
            "ab"));                         // lead byte followed by ASCII
  EXPECT_FALSE(valid("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(valid("\xFF"));
  EXPECT_FALSE(valid("\xF8\x88\x80\x80\x80"));  // 5-byte form
}

TEST(ValidateUsername, ReasonsAreHumanReadable) {
  const auto too_long = validate_username(std::string(65, 'x'));
  ASSERT_TRUE(too_long.has_value());
  EXPECT_NE(too_long->find("64"), std::string::npos) << *too_long;
  const auto control = validate_username("a\nb");
  ASSERT_TRUE(control.has_value());
  EXPECT_NE(control->find("control"), std::string::npos) << *control;
  const auto utf8 = validate_username("\xC0\xAF");
  ASSERT_TRUE(utf8.has_value());
  EXPECT_NE(utf8->find("UTF-8"), std::string::npos) << *utf8;
}

}  // namespace
}  // namespace chatd::chat
