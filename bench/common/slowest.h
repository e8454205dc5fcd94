// The slowest connections of a run, each with when it started and how long
// its handshake took: a percentile says how bad the tail is, these say what
// it is made of. A tail of stalls shows as slow connections started within a
// few milliseconds of each other; a cost per connection spreads them over the
// run. The times are the generator's own: a start is taken before its
// socket(2), a handshake ends when the generator reaped connect's completion.
// So a slow handshake is the SYN's path or the generator itself (its
// socket(2), its turn to run); a fast one with a slow first byte points at
// the server's accept and reply.
#ifndef SBX_BENCH_COMMON_SLOWEST_H_
#define SBX_BENCH_COMMON_SLOWEST_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sbx::bench {

struct SlowConnection {
  uint64_t start_ns = 0;      // CLOCK_MONOTONIC
  uint64_t handshake_ns = 0;  // connect's completion reaped; 0: not known (epoll)
  uint64_t latency_ns = 0;    // the first byte after the start
  uint32_t target = 0;        // index into the generator's targets
};

class Slowest {
 public:
  static constexpr size_t kKept = 512;  // past the p99 of a 2 s sample at 20k conn/s

  void Offer(const SlowConnection& c);  // O(log kKept)
  void Merge(const Slowest& other);
  // [[start_us after run_start_ns, handshake_us, latency_us, target], ...],
  // by start.
  std::string Json(uint64_t run_start_ns) const;

 private:
  std::vector<SlowConnection> heap_;  // a min-heap by latency
};

}  // namespace sbx::bench

#endif  // SBX_BENCH_COMMON_SLOWEST_H_
