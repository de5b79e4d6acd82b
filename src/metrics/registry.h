#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

// A small Prometheus exposition module. Debian 12 packages no maintained C++
// Prometheus client, and chatd needs only counters, gauges and histograms
// rendered in the text format (version 0.0.4), so it is written here; its
// output is checked against the format in tests/unit/metrics.

namespace chatd::metrics {

/// `{name="value",...}` pairs, in the order given.
using Labels = std::vector<std::pair<std::string, std::string>>;

/// A monotonically increasing count. Lock-free; safe from any thread.
class Counter {
 public:
  void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

/// A value that goes up and down. Lock-free; safe from any thread.
class Gauge {
 public:
  void add(std::int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  void set(std::int64_t n) { value_.store(n, std::memory_order_relaxed); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

/// Counts observations into fixed buckets. Lock-free; safe from any thread.
class Histogram {
 public:
  /// `bounds`: the buckets' upper bounds, increasing; +Inf is implied.
  explicit Histogram(std::vector<double> bounds);

  void observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  /// Per-bucket (not cumulative) counts; the last is the +Inf bucket.
  std::vector<std::uint64_t> bucket_counts() const;
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_micros_{0};  // sum in millionths: atomics of double are slow
};

/// Exponential bucket bounds: start, start*factor, ... (count bounds).
std::vector<double> exponential_buckets(double start, double factor, std::size_t count);

/// Holds every metric and renders them. Registration happens at start-up;
/// metrics are never removed, so references stay valid for the registry's life.
class Registry {
 public:
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                       const Labels& labels = {});
  /// A gauge read at scrape time (e.g. the hub's connection count).
  void gauge_callback(const std::string& name, const std::string& help,
                      std::function<double()> read, const Labels& labels = {});
  /// A counter kept elsewhere (e.g. the user cache's own), read at scrape time.
  void counter_callback(const std::string& name, const std::string& help,
                        std::function<double()> read, const Labels& labels = {});

  /// The Prometheus text exposition format.
  std::string render() const;

 private:
  enum class Type { counter, gauge, histogram };
  struct Child {
    Labels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> read;
  };
  struct Family {
    std::string help;
    Type type;
    std::vector<std::unique_ptr<Child>> children;
  };

  /// The family's child with these labels, created when missing. mutex_ must be held.
  Child& child_locked(const std::string& name, const std::string& help, Type type,
                      const Labels& labels);

  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
};

/// `name{a="1",b="2"}`, with label values escaped as the format requires.
std::string series_name(const std::string& name, const Labels& labels);

}  // namespace chatd::metrics
