#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "loadgen/histogram.h"

namespace chatd::loadgen {

/// The results of one run as rows `{scenario, system, metric, value, unit}`,
/// the format bench/run aggregates.
class Report {
 public:
  Report(std::string scenario, std::string system);

  void add(std::string metric, double value, std::string unit);
  /// p50, p90, p99, p99.9, max and mean of `histogram` (nanoseconds) in ms.
  void add_latency(const std::string& prefix, const LatencyHistogram& histogram);

  /// A two-column table for people.
  void print(std::ostream& out) const;
  /// The rows as a JSON list; false (with `error`) when the file can't be written.
  bool write_json(const std::string& path, std::string& error) const;

 private:
  struct Row {
    std::string metric;
    double value;
    std::string unit;
  };
  std::string scenario_;
  std::string system_;
  std::vector<Row> rows_;
};

}  // namespace chatd::loadgen
