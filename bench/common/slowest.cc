#include "bench/common/slowest.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

namespace sbx::bench {
namespace {

// The standard heap keeps its greatest element on top; ordered by this, the
// greatest is the fastest connection kept, the one a slower one replaces.
bool FasterOnTop(const SlowConnection& a, const SlowConnection& b) {
  return a.latency_ns > b.latency_ns;
}

}  // namespace

void Slowest::Offer(const SlowConnection& c) {
  if (heap_.size() < kKept) {
    heap_.push_back(c);
    std::push_heap(heap_.begin(), heap_.end(), FasterOnTop);
    return;
  }
  if (c.latency_ns <= heap_.front().latency_ns) return;
  std::pop_heap(heap_.begin(), heap_.end(), FasterOnTop);
  heap_.back() = c;
  std::push_heap(heap_.begin(), heap_.end(), FasterOnTop);
}

void Slowest::Merge(const Slowest& other) {
  for (const SlowConnection& c : other.heap_) Offer(c);
}

std::string Slowest::Json(uint64_t run_start_ns) const {
  std::vector<SlowConnection> by_start = heap_;
  std::sort(by_start.begin(), by_start.end(), [](const SlowConnection& a, const SlowConnection& b) {
    return a.start_ns < b.start_ns;
  });
  std::string out = "[";
  char buf[96];
  for (const SlowConnection& c : by_start) {
    const uint64_t start_us = c.start_ns > run_start_ns ? (c.start_ns - run_start_ns) / 1000 : 0;
    std::snprintf(buf, sizeof buf, "%s[%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu32 "]",
                  out.size() > 1 ? "," : "", start_us, c.handshake_ns / 1000, c.latency_ns / 1000,
                  c.target);
    out += buf;
  }
  return out + "]";
}

}  // namespace sbx::bench
