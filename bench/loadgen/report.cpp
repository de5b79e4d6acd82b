#include "loadgen/report.h"

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>

namespace chatd::loadgen {
namespace {

/// Integers as integers, the rest with 4 significant decimals at most: the
/// figures are read by people as well as by bench/run.
std::string format_number(double value) {
  char out[64];
  if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 1e15) {
    std::snprintf(out, sizeof out, "%.0f", value);
  } else if (std::isfinite(value)) {
    std::snprintf(out, sizeof out, "%.4f", value);
    // Trim trailing zeros: 0.4120 -> 0.412.
    std::string text(out);
    while (text.back() == '0') text.pop_back();
    if (text.back() == '.') text.pop_back();
    return text;
  } else {
    return "null";  // JSON has no NaN
  }
  return out;
}

std::string quoted(const std::string& text) {
  return boost::json::serialize(boost::json::string(text));
}

}  // namespace

Report::Report(std::string scenario, std::string system)
    : scenario_(std::move(scenario)), system_(std::move(system)) {}

void Report::add(std::string metric, double value, std::string unit) {
  rows_.push_back({std::move(metric), value, std::move(unit)});
}

void Report::add_latency(const std::string& prefix, const LatencyHistogram& histogram) {
  const auto ms = [](std::int64_t ns) { return static_cast<double>(ns) / 1e6; };
  add(prefix + "_p50", ms(histogram.percentile(50)), "ms");
  add(prefix + "_p90", ms(histogram.percentile(90)), "ms");
  add(prefix + "_p99", ms(histogram.percentile(99)), "ms");
  add(prefix + "_p99.9", ms(histogram.percentile(99.9)), "ms");
  add(prefix + "_max", ms(histogram.max()), "ms");
  add(prefix + "_mean", histogram.mean() / 1e6, "ms");
}

void Report::print(std::ostream& out) const {
  out << "scenario " << scenario_ << ", system " << system_ << "\n";
  for (const auto& row : rows_) {
    char line[160];
    std::snprintf(line, sizeof line, "  %-28s %14s %s\n", row.metric.c_str(),
                  format_number(row.value).c_str(), row.unit.c_str());
    out << line;
  }
}

bool Report::write_json(const std::string& path, std::string& error) const {
  std::ofstream file(path, std::ios::trunc);
  if (!file) {
    error = "cannot open " + path + " for writing";
    return false;
  }
  file << "[\n";
  for (std::size_t i = 0; i < rows_.size(); ++i) {
    const auto& row = rows_[i];
    file << "  {\"scenario\": " << quoted(scenario_) << ", \"system\": " << quoted(system_)
         << ", \"metric\": " << quoted(row.metric) << ", \"value\": " << format_number(row.value)
         << ", \"unit\": " << quoted(row.unit) << "}" << (i + 1 < rows_.size() ? ",\n" : "\n");
  }
  file << "]\n";
  file.close();
  if (!file) {
    error = "cannot write " + path;
    return false;
  }
  return true;
}

}  // namespace chatd::loadgen
