#include "metrics/registry.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace chatd::metrics {
namespace {

std::string escape_label_value(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string escape_help(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_value(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (std::isnan(value)) return "NaN";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<long long>(value));
  }
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.9g", value);
  return buffer;
}

}  // namespace

std::string series_name(const std::string& name, const Labels& labels) {
  if (labels.empty()) return name;
  std::string out = name + "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out += ",";
    out += labels[i].first + "=\"" + escape_label_value(labels[i].second) + "\"";
  }
  return out + "}";
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end())) {
    throw std::invalid_argument("histogram bounds must increase");
  }
}

void Histogram::observe(double value) {
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  buckets_[static_cast<std::size_t>(bucket)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  if (value > 0) {
    sum_micros_.fetch_add(static_cast<std::uint64_t>(std::llround(value * 1e6)),
                          std::memory_order_relaxed);
  }
}

std::vector<std::uint64_t> Histogram::bucket_counts() const {
  std::vector<std::uint64_t> counts(bounds_.size() + 1);
  for (std::size_t i = 0; i < counts.size(); ++i) {
    counts[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  return counts;
}

double Histogram::sum() const {
  return static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
}

std::vector<double> exponential_buckets(double start, double factor, std::size_t count) {
  std::vector<double> bounds;
  for (std::size_t i = 0; i < count; ++i, start *= factor) bounds.push_back(start);
  return bounds;
}

Registry::Child& Registry::child_locked(const std::string& name, const std::string& help, Type type,
                                        const Labels& labels) {
  auto [it, inserted] = families_.try_emplace(name, Family{help, type, {}});
  if (!inserted && it->second.type != type) {
    throw std::logic_error("metric " + name + " registered with two types");
  }
  for (auto& existing : it->second.children) {
    if (existing->labels == labels) return *existing;
  }
  auto& created = it->second.children.emplace_back(std::make_unique<Child>());
  created->labels = labels;
  return *created;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mutex_);  // the child is created and filled in under one lock
  Child& c = child_locked(name, help, Type::counter, labels);
  if (!c.counter) c.counter = std::make_unique<Counter>();
  return *c.counter;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  Child& c = child_locked(name, help, Type::gauge, labels);
  if (!c.gauge) c.gauge = std::make_unique<Gauge>();
  return *c.gauge;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help,
                               std::vector<double> bounds, const Labels& labels) {
  std::lock_guard lock(mutex_);
  Child& c = child_locked(name, help, Type::histogram, labels);
  if (!c.histogram) c.histogram = std::make_unique<Histogram>(std::move(bounds));
  return *c.histogram;
}

void Registry::gauge_callback(const std::string& name, const std::string& help,
                              std::function<double()> read, const Labels& labels) {
  std::lock_guard lock(mutex_);
  Child& c = child_locked(name, help, Type::gauge, labels);
  c.read = std::move(read);
}

void Registry::counter_callback(const std::string& name, const std::string& help,
                                std::function<double()> read, const Labels& labels) {
  std::lock_guard lock(mutex_);
  Child& c = child_locked(name, help, Type::counter, labels);
  c.read = std::move(read);
}

std::string Registry::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  out.reserve(8192);
  for (const auto& [name, family] : families_) {
    const char* type = family.type == Type::counter ? "counter"
                       : family.type == Type::gauge ? "gauge"
                                                    : "histogram";
    out += "# HELP " + name + " " + escape_help(family.help) + "\n";
    out += "# TYPE " + name + " " + type + "\n";
    for (const auto& c : family.children) {
      if (c->counter) {
        out += series_name(name, c->labels) + " " + std::to_string(c->counter->value()) + "\n";
      } else if (c->gauge) {
        out += series_name(name, c->labels) + " " + std::to_string(c->gauge->value()) + "\n";
      } else if (c->read) {
        out += series_name(name, c->labels) + " " + format_value(c->read()) + "\n";
      } else if (c->histogram) {
        const auto counts = c->histogram->bucket_counts();
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < counts.size(); ++i) {
          cumulative += counts[i];
          Labels labels = c->labels;
          labels.emplace_back("le", i < c->histogram->bounds().size()
                                        ? format_value(c->histogram->bounds()[i])
                                        : "+Inf");
          out += series_name(name + "_bucket", labels) + " " + std::to_string(cumulative) + "\n";
        }
        out +=
            series_name(name + "_sum", c->labels) + " " + format_value(c->histogram->sum()) + "\n";
        // _count equals the +Inf bucket, as the format requires, even while
        // observations race with the scrape.
        out += series_name(name + "_count", c->labels) + " " + std::to_string(cumulative) + "\n";
      }
    }
  }
  return out;
}

}  // namespace chatd::metrics
