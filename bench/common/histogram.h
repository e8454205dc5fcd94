// Latency histogram: log-linear buckets over nanoseconds (32 sub-buckets per
// power of two, so any reported value is within ~3% of the true one), fixed
// size, no allocation while recording. One per thread; merged at the end.
#ifndef SBX_BENCH_COMMON_HISTOGRAM_H_
#define SBX_BENCH_COMMON_HISTOGRAM_H_

#include <array>
#include <cstdint>
#include <string>

namespace sbx::bench {

class Histogram {
 public:
  void Record(uint64_t ns);
  void Merge(const Histogram& other);

  uint64_t count() const { return count_; }
  uint64_t max_ns() const { return max_; }
  double mean_ns() const {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0;
  }
  // The value at quantile q (0..1): the upper edge of the bucket holding it.
  uint64_t Quantile(double q) const;
  // JSON array of [upper_edge_us, cumulative_fraction] for non-empty buckets
  // (a CDF ready to plot).
  std::string CdfJson() const;
  // JSON array of [upper_edge_ns, count] for non-empty buckets: exact, so
  // that histograms of several generator processes can be merged.
  std::string BucketsJson() const;

 private:
  static constexpr int kSubBits = 5;
  static constexpr int kBuckets = (64 - kSubBits + 1) << kSubBits;
  static int BucketOf(uint64_t ns);
  static uint64_t UpperEdge(int bucket);

  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
};

}  // namespace sbx::bench

#endif  // SBX_BENCH_COMMON_HISTOGRAM_H_
