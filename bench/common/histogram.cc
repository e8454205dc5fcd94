#include "bench/common/histogram.h"

#include <algorithm>
#include <bit>
#include <cstdio>

namespace sbx::bench {

// Values below 2^kSubBits get one bucket each; above, the bucket is the
// position of the top bit plus the next kSubBits bits.
int Histogram::BucketOf(uint64_t ns) {
  if (ns < (1u << kSubBits)) return static_cast<int>(ns);
  int top = 63 - std::countl_zero(ns);
  int shift = top - kSubBits;
  int sub = static_cast<int>((ns >> shift) & ((1u << kSubBits) - 1));
  return ((shift + 1) << kSubBits) + sub;
}

uint64_t Histogram::UpperEdge(int bucket) {
  if (bucket < (1 << kSubBits)) return static_cast<uint64_t>(bucket);
  int shift = (bucket >> kSubBits) - 1;
  uint64_t sub = static_cast<uint64_t>(bucket & ((1 << kSubBits) - 1));
  uint64_t base = (uint64_t{1} << kSubBits | sub) << shift;
  return base + ((uint64_t{1} << shift) - 1);
}

void Histogram::Record(uint64_t ns) {
  ++buckets_[static_cast<size_t>(BucketOf(ns))];
  ++count_;
  sum_ += ns;
  max_ = std::max(max_, ns);
}

void Histogram::Merge(const Histogram& other) {
  for (size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  max_ = std::max(max_, other.max_);
}

uint64_t Histogram::Quantile(double q) const {
  if (count_ == 0) return 0;
  auto rank = static_cast<uint64_t>(q * static_cast<double>(count_));
  if (rank >= count_) rank = count_ - 1;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[static_cast<size_t>(i)];
    if (seen > rank) return std::min(UpperEdge(i), max_);
  }
  return max_;
}

std::string Histogram::CdfJson() const {
  std::string out = "[";
  uint64_t seen = 0;
  char item[64];
  for (int i = 0; i < kBuckets; ++i) {
    uint64_t n = buckets_[static_cast<size_t>(i)];
    if (n == 0) continue;
    seen += n;
    std::snprintf(item, sizeof(item), "%s[%.3f,%.6f]", out.size() > 1 ? "," : "",
                  static_cast<double>(std::min(UpperEdge(i), max_)) / 1000.0,
                  static_cast<double>(seen) / static_cast<double>(count_));
    out += item;
  }
  return out + "]";
}

std::string Histogram::BucketsJson() const {
  std::string out = "[";
  char item[64];
  for (int i = 0; i < kBuckets; ++i) {
    uint64_t n = buckets_[static_cast<size_t>(i)];
    if (n == 0) continue;
    std::snprintf(item, sizeof(item), "%s[%llu,%llu]", out.size() > 1 ? "," : "",
                  static_cast<unsigned long long>(std::min(UpperEdge(i), max_)),
                  static_cast<unsigned long long>(n));
    out += item;
  }
  return out + "]";
}

}  // namespace sbx::bench
