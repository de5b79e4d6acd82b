#include "app/dotenv.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace chatd::app {
namespace {

using Variables = std::map<std::string, std::string>;

Variables parse_ok(std::string_view text) {
  std::string errors;
  Variables result = parse_dotenv(text, &errors);
  EXPECT_EQ(errors, "") << "while parsing:\n" << text;
  return result;
}

TEST(ParseDotenv, KeyValueLines) {
  EXPECT_EQ(parse_ok("PORT=5010\nHOST=0.0.0.0\n"),
            (Variables{{"PORT", "5010"}, {"HOST", "0.0.0.0"}}));
  // The last line needs no newline.
  EXPECT_EQ(parse_ok("A=1\nB=2"), (Variables{{"A", "1"}, {"B", "2"}}));
  EXPECT_EQ(parse_ok("_UNDER_score9=x"), (Variables{{"_UNDER_score9", "x"}}));
}

TEST(ParseDotenv, SpacesAroundEqualsAndLine) {
  EXPECT_EQ(parse_ok("  KEY = value  \n\tOTHER\t=\tv2\t"),
            (Variables{{"KEY", "value"}, {"OTHER", "v2"}}));
}

TEST(ParseDotenv, WindowsLineEndings) {
  EXPECT_EQ(parse_ok("A=1\r\nB=\"two\"\r\n"), (Variables{{"A", "1"}, {"B", "two"}}));
}

TEST(ParseDotenv, CommentsAndBlankLines) {
  EXPECT_EQ(parse_ok("# a comment\n\n   \n  # indented comment\nA=1\n\n#B=2\n"),
            (Variables{{"A", "1"}}));
  EXPECT_EQ(parse_ok(""), Variables{});
}

TEST(ParseDotenv, ExportPrefix) {
  EXPECT_EQ(parse_ok("export SECRET_KEY=s3cret\nexport   PORT = 1"),
            (Variables{{"SECRET_KEY", "s3cret"}, {"PORT", "1"}}));
}

TEST(ParseDotenv, DoubleQuotesWithEscapes) {
  EXPECT_EQ(parse_ok(R"(MSG="line1\nline2")"), (Variables{{"MSG", "line1\nline2"}}));
  EXPECT_EQ(parse_ok(R"(MSG="say \"hi\"")"), (Variables{{"MSG", "say \"hi\""}}));
  EXPECT_EQ(parse_ok(R"(MSG="back\\slash")"), (Variables{{"MSG", "back\\slash"}}));
  EXPECT_EQ(parse_ok(R"(MSG="  keeps spaces # and hashes  ")"),
            (Variables{{"MSG", "  keeps spaces # and hashes  "}}));
  EXPECT_EQ(parse_ok(R"(MSG="quoted" # trailing comment)"), (Variables{{"MSG", "quoted"}}));
  EXPECT_EQ(parse_ok(R"(MSG="")"), (Variables{{"MSG", ""}}));
}

TEST(ParseDotenv, SingleQuotesAreLiteral) {
  EXPECT_EQ(parse_ok(R"(MSG='no\nescape')"), (Variables{{"MSG", "no\\nescape"}}));
  EXPECT_EQ(parse_ok(R"(MSG='has "double" quotes # and hash')"),
            (Variables{{"MSG", "has \"double\" quotes # and hash"}}));
  EXPECT_EQ(parse_ok(R"(MSG='$HOME')"), (Variables{{"MSG", "$HOME"}}));
}

TEST(ParseDotenv, UnquotedValueWithTrailingComment) {
  EXPECT_EQ(parse_ok("PORT=5010 # the default\n"), (Variables{{"PORT", "5010"}}));
  // A '#' not preceded by a space is part of the value.
  EXPECT_EQ(parse_ok("COLOR=#ff0000\nTAG=a#b\n"),
            (Variables{{"COLOR", "#ff0000"}, {"TAG", "a#b"}}));
  // Only a comment after '=': the value is empty, not the comment's text.
  EXPECT_EQ(parse_ok("SECRET_KEY=   # set in production\nURL= # optional\n"),
            (Variables{{"SECRET_KEY", ""}, {"URL", ""}}));
}

TEST(ParseDotenv, ValueMayContainEquals) {
  EXPECT_EQ(parse_ok("USER_SEARCH_URL=http://users:8080/search?x=1&y=2\n"),
            (Variables{{"USER_SEARCH_URL", "http://users:8080/search?x=1&y=2"}}));
  EXPECT_EQ(parse_ok("MONGO_URI=mongodb://user:p=ss@host:27017/chat?authSource=admin"),
            (Variables{{"MONGO_URI", "mongodb://user:p=ss@host:27017/chat?authSource=admin"}}));
  EXPECT_EQ(parse_ok("B64=YWJj=="), (Variables{{"B64", "YWJj=="}}));
}

TEST(ParseDotenv, EmptyValue) {
  EXPECT_EQ(parse_ok("EMPTY=\nNEXT=1"), (Variables{{"EMPTY", ""}, {"NEXT", "1"}}));
}

TEST(ParseDotenv, LaterDefinitionWins) {
  EXPECT_EQ(parse_ok("A=1\nA=2"), (Variables{{"A", "2"}}));
}

TEST(ParseDotenv, InvalidLinesAreReportedWithTheirNumber) {
  std::string errors;
  const Variables result = parse_dotenv(
      "# comment\nGOOD=1\nthis is not a setting\n\n=novalue\n1BAD=x\nALSO_GOOD=2\n", &errors);
  // Good lines around bad ones still count.
  EXPECT_EQ(result, (Variables{{"GOOD", "1"}, {"ALSO_GOOD", "2"}}));
  EXPECT_NE(errors.find("line 3"), std::string::npos) << errors;
  EXPECT_NE(errors.find("line 5"), std::string::npos) << errors;
  EXPECT_NE(errors.find("line 6"), std::string::npos) << errors;
  EXPECT_EQ(errors.find("line 2"), std::string::npos) << errors;
  EXPECT_EQ(errors.find("line 7"), std::string::npos) << errors;
}

TEST(ParseDotenv, KeysWithInvalidCharactersAreErrors) {
  std::string errors;
  parse_dotenv("MY-KEY=1\nMY KEY=2\n", &errors);
  EXPECT_NE(errors.find("line 1"), std::string::npos) << errors;
  EXPECT_NE(errors.find("line 2"), std::string::npos) << errors;
}

TEST(ParseDotenv, UnclosedQuoteIsReported) {
  std::string errors;
  const Variables result =
      parse_dotenv("OK=1\nBROKEN=\"never closed\nSINGLE='also open\n", &errors);
  EXPECT_EQ(result, (Variables{{"OK", "1"}}));
  EXPECT_NE(errors.find("line 2"), std::string::npos) << errors;
  EXPECT_NE(errors.find("line 3"), std::string::npos) << errors;
  EXPECT_NE(errors.find("quote"), std::string::npos) << errors;
}

TEST(ParseDotenv, GarbageAfterClosingQuoteIsAnError) {
  std::string errors;
  const Variables result = parse_dotenv("A=\"x\"y\n", &errors);
  EXPECT_FALSE(errors.empty());
  EXPECT_EQ(result.count("A"), 0u);
}

TEST(ParseDotenv, ErrorsMayBeIgnored) {
  // A null error sink is allowed.
  EXPECT_EQ(parse_dotenv("bad line\nA=1\n", nullptr), (Variables{{"A", "1"}}));
}

// ---------------------------------------------------------------------------
// load_dotenv
// ---------------------------------------------------------------------------

class LoadDotenv : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    const std::string unique =
        "chatd_dotenv_" + std::to_string(::getpid()) + "_" + std::to_string(counter.fetch_add(1));
    dir_ = std::filesystem::temp_directory_path() / unique;
    std::filesystem::create_directories(dir_);
    prefix_ = "CHATD_DOTENV_TEST_" + std::to_string(::getpid()) + "_";
  }
  void TearDown() override {
    for (const auto& name : names_) ::unsetenv(name.c_str());
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::string var(const std::string& suffix) {
    names_.push_back(prefix_ + suffix);
    return names_.back();
  }

  std::string write(const std::string& text) {
    const auto path = dir_ / ".env";
    std::ofstream(path) << text;
    return path.string();
  }

  std::filesystem::path dir_;
  std::string prefix_;
  std::vector<std::string> names_;
};

TEST_F(LoadDotenv, SetsVariablesButTheEnvironmentWins) {
  const std::string from_file = var("FROM_FILE");
  const std::string preset = var("PRESET");
  const std::string quoted = var("QUOTED");
  ASSERT_EQ(::setenv(preset.c_str(), "from-environment", 1), 0);
  ASSERT_EQ(::getenv(from_file.c_str()), nullptr);

  const std::string path =
      write(from_file + "=file-value\n" + preset + "=file-loses\n" + quoted + "=\"a b\"\n");
  std::string error;
  ASSERT_TRUE(load_dotenv(path, error)) << error;

  ASSERT_NE(::getenv(from_file.c_str()), nullptr);
  EXPECT_STREQ(::getenv(from_file.c_str()), "file-value");
  EXPECT_STREQ(::getenv(preset.c_str()), "from-environment");
  EXPECT_STREQ(::getenv(quoted.c_str()), "a b");
}

TEST_F(LoadDotenv, EmptyButSetEnvironmentVariableStillWins) {
  const std::string preset = var("EMPTY_PRESET");
  ASSERT_EQ(::setenv(preset.c_str(), "", 1), 0);
  std::string error;
  ASSERT_TRUE(load_dotenv(write(preset + "=from-file\n"), error)) << error;
  ASSERT_NE(::getenv(preset.c_str()), nullptr);
  EXPECT_STREQ(::getenv(preset.c_str()), "");
}

TEST_F(LoadDotenv, MissingFileIsFine) {
  std::string error;
  EXPECT_TRUE(load_dotenv((dir_ / "does-not-exist.env").string(), error));
  EXPECT_EQ(error, "");
}

TEST_F(LoadDotenv, UnparsableFileFailsAndNamesFileAndLine) {
  const std::string never = var("NEVER");
  const std::string path = write(never + "=1\nnot a setting\n");
  std::string error;
  EXPECT_FALSE(load_dotenv(path, error));
  EXPECT_NE(error.find(path), std::string::npos) << error;
  EXPECT_NE(error.find("line 2"), std::string::npos) << error;
  // Nothing of a broken file is applied.
  EXPECT_EQ(::getenv(never.c_str()), nullptr);
}

}  // namespace
}  // namespace chatd::app
