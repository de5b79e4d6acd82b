#include "loadgen/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace chatd::loadgen {

std::size_t LatencyHistogram::slot_of(std::uint64_t value) {
  if (value < 2 * kSubBuckets) return static_cast<std::size_t>(value);
  const int octave = 63 - std::countl_zero(value);  // >= kSubBucketBits + 1
  const int shift = octave - kSubBucketBits;        // >= 1
  const std::uint64_t mantissa = value >> shift;    // in [kSubBuckets, 2 * kSubBuckets)
  return static_cast<std::size_t>(shift) * kSubBuckets + static_cast<std::size_t>(mantissa);
}

std::uint64_t LatencyHistogram::slot_top(std::size_t slot) {
  if (slot < 2 * kSubBuckets) return slot;
  const std::size_t shift = slot / kSubBuckets - 1;
  const std::uint64_t mantissa = slot % kSubBuckets + kSubBuckets;
  if (shift >= 64 - kSubBucketBits - 1) return UINT64_MAX;  // the top octave
  return ((mantissa + 1) << shift) - 1;
}

void LatencyHistogram::record(std::int64_t value) {
  if (value < 0) value = 0;
  ++counts_[slot_of(static_cast<std::uint64_t>(value))];
  if (count_ == 0 || value < min_) min_ = value;
  if (value > max_) max_ = value;
  ++count_;
  sum_ += static_cast<double>(value);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (std::size_t i = 0; i < kSlots; ++i) counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

std::int64_t LatencyHistogram::percentile(double percent) const {
  if (count_ == 0) return 0;
  const double wanted =
      std::ceil(std::clamp(percent, 0.0, 100.0) / 100.0 * static_cast<double>(count_));
  const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(wanted));
  std::uint64_t seen = 0;
  for (std::size_t slot = 0; slot < kSlots; ++slot) {
    seen += counts_[slot];
    if (seen >= rank) {
      const std::uint64_t top = slot_top(slot);
      return top >= static_cast<std::uint64_t>(max_) ? max_ : static_cast<std::int64_t>(top);
    }
  }
  return max_;
}

}  // namespace chatd::loadgen
