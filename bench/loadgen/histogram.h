#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace chatd::loadgen {

/// A log-linear latency histogram in the manner of HdrHistogram: values below
/// 256 are counted exactly, larger ones in 128 linear sub-buckets per power of
/// two, so every value is known to within 1/128 (0.8%) of itself. Recording
/// is O(1) with no allocation, the whole table is a fixed 58 KiB array, and
/// histograms of several threads merge by adding counts.
///
/// Values are nanoseconds; negative values (clock misuse) count as 0.
class LatencyHistogram {
 public:
  void record(std::int64_t value);
  void merge(const LatencyHistogram& other);

  std::uint64_t count() const { return count_; }
  std::int64_t min() const { return count_ == 0 ? 0 : min_; }
  std::int64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0.0 : sum_ / static_cast<double>(count_); }

  /// The smallest value v such that at least `percent`% of the recorded values
  /// are <= v, reported as the top of v's bucket (never above the real max).
  /// 0 when nothing was recorded.
  std::int64_t percentile(double percent) const;

 private:
  static constexpr int kSubBucketBits = 7;  // 128 sub-buckets: 0.8% resolution
  static constexpr std::size_t kSubBuckets = std::size_t{1} << kSubBucketBits;
  // Exact range [0, 2*kSubBuckets), then kSubBuckets per remaining octave.
  static constexpr std::size_t kSlots = (64 - kSubBucketBits) * kSubBuckets + kSubBuckets;

  static std::size_t slot_of(std::uint64_t value);
  static std::uint64_t slot_top(std::size_t slot);

  std::array<std::uint64_t, kSlots> counts_{};
  std::uint64_t count_ = 0;
  std::int64_t min_ = 0;
  std::int64_t max_ = 0;
  double sum_ = 0;
};

}  // namespace chatd::loadgen
