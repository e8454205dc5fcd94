// What both generator drivers (io_uring and epoll) share: the per-thread plan
// and pacing (closed or open loop), the connection table with its deadline
// queue, the outcome taxonomy, and the per-thread statistics merged at the
// end. The drivers only differ in how they wait for sockets.
#ifndef SBX_BENCH_LOADGEN_LOADGEN_CORE_H_
#define SBX_BENCH_LOADGEN_LOADGEN_CORE_H_

#include <array>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "bench/common/histogram.h"
#include "bench/common/slowest.h"
#include "bench/loadgen/loadgen_options.h"

namespace sbx::bench {

uint64_t NowNs();  // CLOCK_MONOTONIC

enum class Outcome : int {
  kOk = 0,
  kWrongGreeting,  // a backend answered, but not the one this address maps to
  kRefused,        // ECONNREFUSED (nobody listening)
  kReset,          // ECONNRESET / EPIPE before the greeting
  kTimeout,        // no greeting within --timeout-ms
  kNoGreeting,     // orderly close (FIN) before any byte: dropped by the server
  kLocal,          // our own failure (socket(2): EMFILE, EADDRNOTAVAIL...)
  kOther,          // any other errno
  kCount
};
const char* OutcomeName(Outcome outcome);
Outcome OutcomeOfErrno(int err);

struct TargetStats {
  uint64_t ok = 0;
  uint64_t wrong = 0;
  uint64_t failed = 0;
  std::string wrong_example;  // the first wrong greeting seen
};

struct ThreadStats {
  Histogram latency;  // connect start to first byte, ok connections only
  Slowest slowest;    // the slowest of those, for the tail's shape
  std::array<uint64_t, static_cast<int>(Outcome::kCount)> outcomes{};
  std::vector<TargetStats> targets;
  uint64_t started = 0;
  uint64_t first_errno[static_cast<int>(Outcome::kCount)] = {};  // for diagnosis
  void Merge(const ThreadStats& other);
};

// How many connections a thread may start now.
class Pacer {
 public:
  Pacer(const LoadOptions& options, unsigned thread, uint64_t start_ns);
  // Starts allowed now given `in_flight` (never more than `max_batch`).
  uint64_t Allowed(uint64_t now_ns, uint64_t in_flight, uint64_t max_batch) const;
  void Started() { ++started_; }
  bool Finished(uint64_t now_ns) const;  // no more starts, ever
  // How long the driver may sleep before a start or a deadline is due.
  uint64_t WaitNs(uint64_t now_ns) const;

 private:
  uint64_t budget_ = 0;  // 0: unbounded
  uint64_t concurrency_ = 0;
  double rate_ = 0;  // per thread, per second
  uint64_t max_in_flight_ = 0;
  uint64_t start_ns_ = 0;
  uint64_t deadline_ns_ = 0;  // 0: none
  uint64_t started_ = 0;
};

// One connection in flight. `generation` tells a stale deadline entry from
// a reused slot.
struct Conn {
  int fd = -1;
  uint32_t generation = 0;
  bool active = false;
  bool timed_out = false;
  int pending_ops = 0;                // io_uring: completions still to come
  Outcome decided = Outcome::kCount;  // io_uring: the outcome, once known
  int err = 0;
  size_t target = 0;
  uint64_t start_ns = 0;
  uint64_t connected_ns = 0;  // io_uring: connect's completion; 0: not known
  uint64_t first_byte_ns = 0;
  uint32_t got = 0;
  char buffer[64];
};

class ConnTable {
 public:
  // Room for one thread's share of the connections in flight: the
  // concurrency (closed loop) or the in-flight bound (open loop).
  static size_t CapacityFor(const LoadOptions& options) {
    return (options.rate > 0 ? options.max_in_flight : options.concurrency) / options.threads + 1;
  }
  explicit ConnTable(size_t capacity);
  Conn* Allocate(uint64_t now_ns, size_t target);  // nullptr when full
  void Free(Conn* conn);
  Conn& at(size_t index) { return conns_[index]; }
  size_t IndexOf(const Conn* conn) const { return static_cast<size_t>(conn - conns_.data()); }
  size_t in_flight() const { return in_flight_; }
  // Calls on_expired(conn) for every active connection older than
  // `timeout_ns`; entries of freed or reused slots are dropped.
  template <typename F>
  void Expire(uint64_t now_ns, uint64_t timeout_ns, F&& on_expired) {
    while (!deadlines_.empty() && deadlines_.front().start_ns + timeout_ns <= now_ns) {
      Entry e = deadlines_.front();
      deadlines_.pop_front();
      Conn& c = conns_[e.index];
      if (c.active && !c.timed_out && c.generation == e.generation) on_expired(c);
    }
  }

 private:
  struct Entry {
    size_t index;
    uint32_t generation;
    uint64_t start_ns;
  };
  std::vector<Conn> conns_;
  std::vector<size_t> free_;
  std::deque<Entry> deadlines_;  // FIFO: one timeout for all, so sorted by start
  size_t in_flight_ = 0;
};

// Bytes received so far against the target's greeting: the outcome once
// decided (complete or mismatching), or kCount while more bytes are needed.
Outcome JudgeGreeting(const Conn& conn, const Target& target);
// Books a finished connection into `stats`.
void Record(ThreadStats& stats, const Conn& conn, Outcome outcome, uint64_t first_byte_ns,
            const std::vector<Target>& targets, int err = 0);

// The drivers: run one thread's share of the load until the pacer is done and
// nothing is in flight. Return 0, or an errno if set-up failed (printed).
int RunEpollThread(const LoadOptions& options, unsigned thread, ThreadStats& stats);
int RunUringThread(const LoadOptions& options, unsigned thread, ThreadStats& stats);

}  // namespace sbx::bench

#endif  // SBX_BENCH_LOADGEN_LOADGEN_CORE_H_
