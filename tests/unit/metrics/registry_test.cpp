#include "metrics/registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

// The registry's output checked against the Prometheus text exposition format
// (version 0.0.4): https://prometheus.io/docs/instrumenting/exposition_formats/
// The tests parse what render() writes with a strict reader of that format
// instead of comparing strings, so they say which rule a line breaks.

namespace chatd::metrics {
namespace {

// ---------------------------------------------------------------------------
// A strict reader of the text format
// ---------------------------------------------------------------------------

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;  // unescaped values
  std::vector<std::string> label_order;
  std::string value;  // as written

  double number() const {
    if (value == "+Inf") return std::numeric_limits<double>::infinity();
    if (value == "-Inf") return -std::numeric_limits<double>::infinity();
    if (value == "NaN") return std::numeric_limits<double>::quiet_NaN();
    std::size_t used = 0;
    const double parsed = std::stod(value, &used);
    if (used != value.size()) throw std::invalid_argument("trailing characters in " + value);
    return parsed;
  }
};

struct Family {
  std::optional<std::string> help;  // unescaped
  std::optional<std::string> type;
  int help_lines = 0;
  int type_lines = 0;
};

struct Exposition {
  std::map<std::string, Family> families;
  std::vector<Sample> samples;
  std::vector<std::string> family_order;  // families in the order their lines appear

  /// The samples named exactly `name` whose labels include `match`.
  std::vector<Sample> find(const std::string& name,
                           const std::map<std::string, std::string>& match = {}) const {
    std::vector<Sample> found;
    for (const auto& s : samples) {
      if (s.name != name) continue;
      bool ok = true;
      for (const auto& [k, v] : match) {
        const auto it = s.labels.find(k);
        ok = ok && it != s.labels.end() && it->second == v;
      }
      if (ok) found.push_back(s);
    }
    return found;
  }

  /// The one sample with exactly these labels; fails the test otherwise.
  Sample one(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    std::vector<Sample> found;
    for (const auto& s : find(name, labels)) {
      if (s.labels == labels) found.push_back(s);
    }
    EXPECT_EQ(found.size(), 1u) << "samples named " << name;
    return found.empty() ? Sample{} : found.front();
  }
};

const std::regex kMetricName("^[a-zA-Z_:][a-zA-Z0-9_:]*$");
const std::regex kLabelName("^[a-zA-Z_][a-zA-Z0-9_]*$");

bool is_metric_name(const std::string& s) {
  return std::regex_match(s, kMetricName);
}

/// The family a sample belongs to: histogram series carry a suffix.
std::string family_of(const std::string& sample, const std::map<std::string, Family>& families) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string sfx = suffix;
    if (sample.size() > sfx.size() &&
        sample.compare(sample.size() - sfx.size(), sfx.size(), sfx) == 0) {
      const std::string base = sample.substr(0, sample.size() - sfx.size());
      const auto it = families.find(base);
      if (it != families.end() && it->second.type == "histogram") return base;
    }
  }
  return sample;
}

std::string unescape_help(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == '\\' || s[i + 1] == 'n')) {
      out += s[i + 1] == 'n' ? '\n' : '\\';
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

/// Parses `text` into `exposition`, adding a test failure for every line that
/// breaks the format (a void function, so that ASSERT_* can stop at the first).
void parse_into(const std::string& text, Exposition& exposition) {
  if (!text.empty()) {
    EXPECT_EQ(text.back(), '\n') << "the exposition must end with a line feed";
  }
  std::istringstream lines(text);
  std::string line;
  std::string current_family;
  std::set<std::string> finished_families;
  std::set<std::string> seen_series;
  int number = 0;
  while (std::getline(lines, line)) {
    ++number;
    SCOPED_TRACE("line " + std::to_string(number) + ": " + line);
    ASSERT_FALSE(line.empty()) << "no empty lines expected";
    ASSERT_EQ(line.find('\r'), std::string::npos);
    if (line[0] == '#') {
      std::istringstream words(line);
      std::string hash, keyword, name;
      words >> hash >> keyword >> name;
      ASSERT_EQ(hash, "#");
      ASSERT_TRUE(keyword == "HELP" || keyword == "TYPE") << "unknown comment " << keyword;
      ASSERT_TRUE(is_metric_name(name)) << "bad metric name " << name;
      const std::string prefix = "# " + keyword + " " + name;
      ASSERT_EQ(line.compare(0, prefix.size(), prefix), 0);
      std::string rest = line.substr(prefix.size());
      ASSERT_FALSE(rest.empty()) << keyword << " without a value";
      ASSERT_EQ(rest[0], ' ');
      rest = rest.substr(1);
      Family& family = exposition.families[name];
      // HELP and TYPE come before the family's samples, and a family's lines are
      // contiguous: no family appears twice.
      EXPECT_FALSE(finished_families.count(name)) << name << " appears in two places";
      if (current_family != name) {
        if (!current_family.empty()) finished_families.insert(current_family);
        current_family = name;
        exposition.family_order.push_back(name);
      }
      if (keyword == "HELP") {
        ++family.help_lines;
        family.help = unescape_help(rest);
      } else {
        ++family.type_lines;
        EXPECT_TRUE(rest == "counter" || rest == "gauge" || rest == "histogram" ||
                    rest == "summary" || rest == "untyped")
            << "bad type " << rest;
        family.type = rest;
      }
      continue;
    }
    Sample sample;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    sample.name = line.substr(0, i);
    ASSERT_TRUE(is_metric_name(sample.name)) << "bad metric name " << sample.name;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const std::size_t eq = line.find('=', i);
        ASSERT_NE(eq, std::string::npos) << "label without '='";
        const std::string label = line.substr(i, eq - i);
        ASSERT_TRUE(std::regex_match(label, kLabelName)) << "bad label name " << label;
        ASSERT_EQ(label.rfind("__", 0), std::string::npos) << "reserved label name " << label;
        ASSERT_LT(eq + 1, line.size());
        ASSERT_EQ(line[eq + 1], '"') << "label value must be quoted";
        std::string value;
        std::size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\') {
            ASSERT_LT(j + 1, line.size());
            const char next = line[j + 1];
            ASSERT_TRUE(next == '\\' || next == '"' || next == 'n')
                << "invalid escape \\" << next << " in a label value";
            value += next == 'n' ? '\n' : next;
            ++j;
          } else {
            value += line[j];
          }
        }
        ASSERT_LT(j, line.size()) << "unterminated label value";
        ASSERT_FALSE(sample.labels.count(label)) << "label " << label << " twice";
        sample.labels[label] = value;
        sample.label_order.push_back(label);
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ASSERT_LT(i, line.size()) << "unterminated label set";
      ++i;  // '}'
    }
    ASSERT_LT(i, line.size()) << "sample without a value";
    ASSERT_EQ(line[i], ' ') << "one space between series and value";
    sample.value = line.substr(i + 1);
    ASSERT_FALSE(sample.value.empty());
    ASSERT_EQ(sample.value.find(' '), std::string::npos) << "no timestamp expected";
    EXPECT_NO_THROW(sample.number()) << "value is not a float: " << sample.value;

    const std::string family = family_of(sample.name, exposition.families);
    EXPECT_EQ(family, current_family) << "sample outside its family's block (or before its TYPE)";
    EXPECT_TRUE(exposition.families.count(family)) << "sample of a family without HELP/TYPE";
    EXPECT_TRUE(seen_series.insert(line.substr(0, i)).second) << "series written twice";
    exposition.samples.push_back(std::move(sample));
  }
  for (const auto& [name, family] : exposition.families) {
    EXPECT_EQ(family.help_lines, 1) << "HELP lines of " << name;
    EXPECT_EQ(family.type_lines, 1) << "TYPE lines of " << name;
  }
}

Exposition parse(const std::string& text) {
  Exposition exposition;
  parse_into(text, exposition);
  return exposition;
}

/// Checks a histogram's series as the format requires and returns its bucket
/// counts by `le` string, in the order written.
std::vector<std::pair<std::string, std::uint64_t>> check_histogram(
    const Exposition& e, const std::string& name,
    const std::map<std::string, std::string>& labels) {
  std::vector<std::pair<std::string, std::uint64_t>> buckets;
  double previous_bound = -std::numeric_limits<double>::infinity();
  std::uint64_t previous_count = 0;
  for (const auto& s : e.find(name + "_bucket", labels)) {
    auto without_le = s.labels;
    without_le.erase("le");
    if (without_le != labels) continue;
    EXPECT_TRUE(s.labels.count("le")) << "bucket without le";
    EXPECT_EQ(s.label_order.back(), "le") << "le comes last, after the family's labels";
    const std::string le = s.labels.at("le");
    const double bound = le == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(le);
    EXPECT_GT(bound, previous_bound) << "buckets must be written in increasing le";
    const auto count = static_cast<std::uint64_t>(s.number());
    EXPECT_EQ(static_cast<double>(count), s.number()) << "bucket count is an integer";
    EXPECT_GE(count, previous_count) << "buckets are cumulative: le=" << le;
    previous_bound = bound;
    previous_count = count;
    buckets.emplace_back(le, count);
  }
  EXPECT_FALSE(buckets.empty()) << name << " has no buckets";
  if (buckets.empty()) return buckets;
  EXPECT_EQ(buckets.back().first, "+Inf") << "the last bucket is le=\"+Inf\"";
  const Sample count = e.one(name + "_count", labels);
  e.one(name + "_sum", labels);
  EXPECT_EQ(count.number(), static_cast<double>(buckets.back().second))
      << "_count equals the +Inf bucket";
  return buckets;
}

// ---------------------------------------------------------------------------
// HELP, TYPE, names
// ---------------------------------------------------------------------------

TEST(RegistryRender, EmptyRegistryRendersNothing) {
  EXPECT_EQ(Registry{}.render(), "");
}

TEST(RegistryRender, HelpAndTypeOncePerFamilyBeforeItsSamples) {
  Registry r;
  r.counter("chatd_x_total", "Things.", {{"code", "a"}}).inc();
  r.gauge("chatd_level", "A level.").set(3);
  r.counter("chatd_x_total", "Things.", {{"code", "b"}}).inc(2);
  r.histogram("chatd_latency_seconds", "Latency.", {0.1, 1}, {{"kind", "x"}}).observe(0.5);
  r.histogram("chatd_latency_seconds", "Latency.", {0.1, 1}, {{"kind", "y"}}).observe(2);
  r.counter("chatd_x_total", "Things.", {{"code", "c"}});

  const Exposition e = parse(r.render());
  ASSERT_EQ(e.families.size(), 3u);
  EXPECT_EQ(e.families.at("chatd_x_total").type, "counter");
  EXPECT_EQ(e.families.at("chatd_level").type, "gauge");
  EXPECT_EQ(e.families.at("chatd_latency_seconds").type, "histogram");
  EXPECT_EQ(e.families.at("chatd_x_total").help, "Things.");
  EXPECT_EQ(e.find("chatd_x_total").size(), 3u);
  EXPECT_EQ(e.one("chatd_x_total", {{"code", "a"}}).value, "1");
  EXPECT_EQ(e.one("chatd_x_total", {{"code", "b"}}).value, "2");
  EXPECT_EQ(e.one("chatd_x_total", {{"code", "c"}}).value, "0") << "registered, never incremented";
  EXPECT_EQ(e.family_order.size(), 3u) << "each family is one block";
}

TEST(RegistryRender, HelpTextIsEscaped) {
  Registry r;
  r.counter("chatd_escaped_total", "Back\\slash, \"quotes\" stay,\nnew line.");
  const std::string text = r.render();
  EXPECT_NE(text.find("# HELP chatd_escaped_total Back\\\\slash, \"quotes\" stay,\\nnew line.\n"),
            std::string::npos)
      << text;
  const Exposition e = parse(text);
  EXPECT_EQ(e.families.at("chatd_escaped_total").help, "Back\\slash, \"quotes\" stay,\nnew line.");
}

// ---------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------

TEST(RegistryRender, LabelValuesAreEscaped) {
  const std::string nasty = "back\\slash \"quoted\"\nsecond line, {braces}=x";
  Registry r;
  r.counter("chatd_labelled_total", "Labels.", {{"path", nasty}, {"plain", "ok"}}).inc(7);
  const std::string text = r.render();
  EXPECT_NE(
      text.find(
          R"(chatd_labelled_total{path="back\\slash \"quoted\"\nsecond line, {braces}=x",plain="ok"} 7)"),
      std::string::npos)
      << text;
  const Exposition e = parse(text);
  const Sample s = e.one("chatd_labelled_total", {{"path", nasty}, {"plain", "ok"}});
  EXPECT_EQ(s.value, "7");
  EXPECT_EQ(s.label_order, (std::vector<std::string>{"path", "plain"})) << "labels in given order";
}

TEST(SeriesName, FormatsAndEscapes) {
  EXPECT_EQ(series_name("m", {}), "m");
  EXPECT_EQ(series_name("m", {{"a", "1"}}), R"(m{a="1"})");
  EXPECT_EQ(series_name("m", {{"a", "1"}, {"b", "x\"y"}}), R"(m{a="1",b="x\"y"})");
  EXPECT_EQ(series_name("m", {{"a", "\\"}}), R"(m{a="\\"})");
  EXPECT_EQ(series_name("m", {{"a", "\n"}}), R"(m{a="\n"})");
  EXPECT_EQ(series_name("m", {{"a", ""}}), R"(m{a=""})");
  EXPECT_EQ(series_name("m", {{"a", "ünï"}}), "m{a=\"ünï\"}") << "UTF-8 passes through";
}

// ---------------------------------------------------------------------------
// Counters, gauges, callbacks
// ---------------------------------------------------------------------------

TEST(RegistryRender, CounterValues) {
  Registry r;
  Counter& c = r.counter("chatd_things_total", "Things.");
  EXPECT_EQ(parse(r.render()).one("chatd_things_total").value, "0");
  c.inc();
  c.inc(41);
  EXPECT_EQ(c.value(), 42u);
  EXPECT_EQ(parse(r.render()).one("chatd_things_total").value, "42");
  c.inc(std::uint64_t{1} << 40);
  EXPECT_EQ(parse(r.render()).one("chatd_things_total").value, "1099511627818")
      << "large counts are written in full, not in exponent notation";
}

TEST(RegistryRender, GaugeValuesGoBothWays) {
  Registry r;
  Gauge& g = r.gauge("chatd_open", "Open things.");
  g.add(5);
  g.add(-2);
  EXPECT_EQ(parse(r.render()).one("chatd_open").value, "3");
  g.set(-7);
  EXPECT_EQ(g.value(), -7);
  EXPECT_EQ(parse(r.render()).one("chatd_open").value, "-7");
}

TEST(RegistryRender, CallbacksAreReadAtEachRender) {
  Registry r;
  double level = 0;
  int reads = 0;
  r.gauge_callback("chatd_level", "A level.", [&] {
    ++reads;
    return level;
  });
  double total = 0;
  r.counter_callback("chatd_kept_elsewhere_total", "Counted elsewhere.", [&] { return total; },
                     {{"result", "hit"}});
  EXPECT_EQ(reads, 0) << "registration does not read";

  Exposition e = parse(r.render());
  EXPECT_EQ(e.one("chatd_level").value, "0");
  EXPECT_EQ(e.one("chatd_kept_elsewhere_total", {{"result", "hit"}}).value, "0");
  EXPECT_EQ(e.families.at("chatd_level").type, "gauge");
  EXPECT_EQ(e.families.at("chatd_kept_elsewhere_total").type, "counter");

  level = 2.5;
  total = 1e6;
  e = parse(r.render());
  EXPECT_EQ(e.one("chatd_level").number(), 2.5);
  EXPECT_EQ(e.one("chatd_kept_elsewhere_total", {{"result", "hit"}}).value, "1000000");
  EXPECT_EQ(reads, 2);

  level = 0.001;
  EXPECT_DOUBLE_EQ(parse(r.render()).one("chatd_level").number(), 0.001);
  level = -1.25;
  EXPECT_EQ(parse(r.render()).one("chatd_level").number(), -1.25);
}

TEST(RegistryRender, SpecialFloatValues) {
  Registry r;
  double value = std::numeric_limits<double>::infinity();
  r.gauge_callback("chatd_special", "Special.", [&] { return value; });
  EXPECT_EQ(parse(r.render()).one("chatd_special").value, "+Inf");
  value = -std::numeric_limits<double>::infinity();
  EXPECT_EQ(parse(r.render()).one("chatd_special").value, "-Inf");
  value = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(parse(r.render()).one("chatd_special").value, "NaN");
  value = 1e300;
  EXPECT_EQ(parse(r.render()).one("chatd_special").number(), 1e300);
}

// ---------------------------------------------------------------------------
// Histograms
// ---------------------------------------------------------------------------

TEST(HistogramRender, BucketsAreCumulativeWithInfSumAndCount) {
  Registry r;
  Histogram& h = r.histogram("chatd_op_seconds", "Op time.", {0.1, 0.5, 1}, {{"op", "commit"}});
  for (double v : {0.05, 0.1, 0.3, 0.7, 5.0}) h.observe(v);

  const Exposition e = parse(r.render());
  EXPECT_EQ(e.families.at("chatd_op_seconds").type, "histogram");
  const auto buckets = check_histogram(e, "chatd_op_seconds", {{"op", "commit"}});
  using B = std::pair<std::string, std::uint64_t>;
  // 0.1 is counted in le="0.1": upper bounds are inclusive.
  EXPECT_EQ(buckets, (std::vector<B>{{"0.1", 2}, {"0.5", 3}, {"1", 4}, {"+Inf", 5}}));
  EXPECT_EQ(e.one("chatd_op_seconds_count", {{"op", "commit"}}).value, "5");
  EXPECT_NEAR(e.one("chatd_op_seconds_sum", {{"op", "commit"}}).number(), 6.15, 1e-6);
  EXPECT_EQ(h.count(), 5u);
  EXPECT_EQ(h.bucket_counts(), (std::vector<std::uint64_t>{2, 1, 1, 1}))
      << "per bucket, not cumulative";
  // No stray series of the family without its suffix.
  EXPECT_TRUE(e.find("chatd_op_seconds").empty());
}

TEST(HistogramRender, EmptyHistogramHasZeroBucketsSumAndCount) {
  Registry r;
  r.histogram("chatd_idle_seconds", "Nothing yet.", exponential_buckets(0.001, 10, 3));
  const Exposition e = parse(r.render());
  const auto buckets = check_histogram(e, "chatd_idle_seconds", {});
  ASSERT_EQ(buckets.size(), 4u);
  for (const auto& [le, count] : buckets) EXPECT_EQ(count, 0u) << le;
  EXPECT_EQ(e.one("chatd_idle_seconds_sum").number(), 0.0);
  EXPECT_EQ(e.one("chatd_idle_seconds_count").value, "0");
}

TEST(HistogramRender, NoBoundsMeansOnlyTheInfBucket) {
  Registry r;
  Histogram& h = r.histogram("chatd_any", "Anything.", {});
  h.observe(3);
  h.observe(4);
  const Exposition e = parse(r.render());
  const auto buckets = check_histogram(e, "chatd_any", {});
  ASSERT_EQ(buckets.size(), 1u);
  EXPECT_EQ(buckets[0], (std::pair<std::string, std::uint64_t>{"+Inf", 2}));
  EXPECT_EQ(e.one("chatd_any_sum").number(), 7.0);
}

TEST(HistogramRender, BoundsThatDoNotIncreaseAreRefused) {
  EXPECT_THROW(Histogram({1, 0.5}), std::invalid_argument);
  Registry r;
  EXPECT_THROW(r.histogram("chatd_bad", "Bad.", {2, 1}), std::invalid_argument);
}

TEST(HistogramRender, SumKeepsSubMillisecondPrecision) {
  Registry r;
  Histogram& h = r.histogram("chatd_fast_seconds", "Fast.", exponential_buckets(0.0001, 2, 16));
  for (int i = 0; i < 1000; ++i) h.observe(0.000250);  // 250 µs each
  EXPECT_NEAR(h.sum(), 0.25, 1e-9);
  const Exposition e = parse(r.render());
  EXPECT_NEAR(e.one("chatd_fast_seconds_sum").number(), 0.25, 1e-9);
  const auto buckets = check_histogram(e, "chatd_fast_seconds", {});
  ASSERT_EQ(buckets.size(), 17u);
  EXPECT_EQ(buckets[0].second, 0u) << "le=0.0001";
  EXPECT_EQ(buckets[1].second, 0u) << "le=0.0002";
  EXPECT_EQ(buckets[2].second, 1000u) << "le=0.0004";
}

TEST(ExponentialBuckets, GrowByTheFactor) {
  EXPECT_EQ(exponential_buckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
  EXPECT_TRUE(exponential_buckets(1, 2, 0).empty());
  const auto b = exponential_buckets(0.0001, 2, 16);
  ASSERT_EQ(b.size(), 16u);
  EXPECT_DOUBLE_EQ(b.front(), 0.0001);
  EXPECT_DOUBLE_EQ(b.back(), 0.0001 * 32768);
  for (std::size_t i = 1; i < b.size(); ++i) EXPECT_DOUBLE_EQ(b[i], b[i - 1] * 2);
}

TEST(ExponentialBuckets, RenderAsDistinctParseableBounds) {
  Registry r;
  const auto bounds = exponential_buckets(0.0001, 2, 16);
  r.histogram("chatd_exp_seconds", "Exp.", bounds);
  const Exposition e = parse(r.render());
  const auto buckets = check_histogram(e, "chatd_exp_seconds", {});
  ASSERT_EQ(buckets.size(), bounds.size() + 1);
  std::set<std::string> distinct;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    distinct.insert(buckets[i].first);
    EXPECT_NEAR(std::stod(buckets[i].first), bounds[i], bounds[i] * 1e-8) << buckets[i].first;
    EXPECT_EQ(buckets[i].first.find('e'), std::string::npos)
        << "short decimal form expected, got " << buckets[i].first;
  }
  EXPECT_EQ(distinct.size(), bounds.size());
  EXPECT_EQ(buckets[0].first, "0.0001");
  EXPECT_EQ(buckets[15].first, "3.2768");
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

TEST(RegistryConcurrency, FourThreadsObserveAndCountExactly) {
  Registry r;
  Histogram& h = r.histogram("chatd_conc_seconds", "Concurrent.", {0.001, 0.01, 0.1});
  Counter& c = r.counter("chatd_conc_total", "Concurrent.");
  Gauge& g = r.gauge("chatd_conc_open", "Concurrent.");
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100000;
  // Thread t observes values of bucket t (0.0005, 0.005, 0.05, 0.5): exact in micros.
  const double values[kThreads] = {0.0005, 0.005, 0.05, 0.5};
  std::atomic<bool> go{false};
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < kPerThread; ++i) {
        h.observe(values[t]);
        c.inc();
        g.add(1);
        g.add(-1);
      }
      done.fetch_add(1);
    });
  }
  // Scrapes racing the observations are still well-formed: cumulative buckets,
  // _count equal to the +Inf bucket.
  go.store(true);
  int scrapes = 0;
  while (done.load() < kThreads || scrapes == 0) {
    const Exposition e = parse(r.render());
    check_histogram(e, "chatd_conc_seconds", {});
    ++scrapes;
    if (::testing::Test::HasFailure()) break;
  }
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(h.count(), std::uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(h.bucket_counts(), (std::vector<std::uint64_t>(kThreads, kPerThread)));
  EXPECT_NEAR(h.sum(), kPerThread * (0.0005 + 0.005 + 0.05 + 0.5), 1e-6);
  EXPECT_EQ(c.value(), std::uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(g.value(), 0);

  const Exposition e = parse(r.render());
  using B = std::pair<std::string, std::uint64_t>;
  EXPECT_EQ(
      check_histogram(e, "chatd_conc_seconds", {}),
      (std::vector<B>{{"0.001", 100000}, {"0.01", 200000}, {"0.1", 300000}, {"+Inf", 400000}}));
  EXPECT_EQ(e.one("chatd_conc_total").value, "400000");
  EXPECT_NEAR(e.one("chatd_conc_seconds_sum").number(), 55550.0, 1e-3);
}

TEST(RegistryConcurrency, ConcurrentRegistrationOfOneSeriesYieldsOneObject) {
  Registry r;
  constexpr int kThreads = 4;
  std::vector<Counter*> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& c = r.counter("chatd_race_total", "Race.", {{"code", "x"}});
      c.inc();
      got[t] = &c;
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 1; t < kThreads; ++t) EXPECT_EQ(got[t], got[0]);
  EXPECT_EQ(parse(r.render()).one("chatd_race_total", {{"code", "x"}}).value, "4");
}

// ---------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------

TEST(RegistryRegistration, OneNameWithTwoTypesThrows) {
  Registry r;
  r.counter("chatd_thing", "A counter.");
  EXPECT_THROW(r.gauge("chatd_thing", "Now a gauge."), std::logic_error);
  EXPECT_THROW(r.histogram("chatd_thing", "Now a histogram.", {1}), std::logic_error);
  EXPECT_THROW(r.gauge_callback("chatd_thing", "A gauge callback.", [] { return 1.0; }),
               std::logic_error);
  EXPECT_THROW(r.gauge("chatd_thing", "With other labels too.", {{"a", "b"}}), std::logic_error);

  r.gauge("chatd_level", "A gauge.");
  EXPECT_THROW(r.counter("chatd_level", "Now a counter."), std::logic_error);
  EXPECT_THROW(r.counter_callback("chatd_level", "A counter callback.", [] { return 1.0; }),
               std::logic_error);

  // The refused registrations left nothing behind.
  const Exposition e = parse(r.render());
  EXPECT_EQ(e.families.size(), 2u);
  EXPECT_EQ(e.families.at("chatd_thing").type, "counter");
  EXPECT_EQ(e.find("chatd_thing").size(), 1u);
}

TEST(RegistryRegistration, SameNameAndLabelsReturnTheSameObject) {
  Registry r;
  Counter& a = r.counter("chatd_same_total", "Same.", {{"code", "x"}});
  Counter& b = r.counter("chatd_same_total", "Same.", {{"code", "x"}});
  Counter& other = r.counter("chatd_same_total", "Same.", {{"code", "y"}});
  Counter& unlabelled = r.counter("chatd_same_total", "Same.");
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &other);
  EXPECT_NE(&a, &unlabelled);
  a.inc();
  b.inc();
  EXPECT_EQ(a.value(), 2u);
  EXPECT_EQ(other.value(), 0u);

  Gauge& g1 = r.gauge("chatd_same_gauge", "Same.");
  Gauge& g2 = r.gauge("chatd_same_gauge", "Same.");
  EXPECT_EQ(&g1, &g2);

  Histogram& h1 = r.histogram("chatd_same_seconds", "Same.", {1, 2});
  Histogram& h2 = r.histogram("chatd_same_seconds", "Same.", {1, 2});
  EXPECT_EQ(&h1, &h2);

  const Exposition e = parse(r.render());
  EXPECT_EQ(e.find("chatd_same_total").size(), 3u) << "one series per label set";
  EXPECT_EQ(e.one("chatd_same_total", {{"code", "x"}}).value, "2");
}

TEST(RegistryRegistration, ReferencesStayValidAsMoreMetricsAreRegistered) {
  Registry r;
  Counter& first = r.counter("chatd_first_total", "First.", {{"n", "0"}});
  std::vector<Counter*> more;
  for (int i = 1; i < 200; ++i) {
    more.push_back(&r.counter("chatd_first_total", "First.", {{"n", std::to_string(i)}}));
    r.gauge("chatd_g" + std::to_string(i), "More families.");
  }
  first.inc(3);
  for (Counter* c : more) c->inc();
  const Exposition e = parse(r.render());
  EXPECT_EQ(e.one("chatd_first_total", {{"n", "0"}}).value, "3");
  EXPECT_EQ(e.one("chatd_first_total", {{"n", "199"}}).value, "1");
  EXPECT_EQ(e.families.size(), 200u);
}

}  // namespace
}  // namespace chatd::metrics
