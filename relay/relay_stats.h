// The relay's counters: every connection taken from the source ends counted
// under exactly one close reason. Each worker writes its own block (relaxed
// atomics); the metrics thread and the SIGUSR1 handler read them.
#ifndef SBX_RELAY_RELAY_STATS_H_
#define SBX_RELAY_RELAY_STATS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sbx::relay {

enum class CloseReason : int {
  kCompleted,          // both directions ended with EOF
  kClientReset,        // the client reset (or failed); the target got a reset
  kTargetReset,        // the target reset (or failed); the client got a reset
  kTargetRefused,      // connect: ECONNREFUSED (or ENOENT for a Unix path)
  kTargetUnreachable,  // connect: any other error
  kConnectTimeout,     // --connect-timeout passed
  kIdleTimeout,        // --idle-timeout passed
  kProxyTargetClosed,  // the target closed before sending a byte, after a PROXY header
  kNotConnected,       // a received fd that is no connected stream socket
  kNat64Refused,       // -N: the local address is outside the prefix
  kUnixRefused,        // --refuse-unix-clients: a passed AF_UNIX connection (no address)
  kNoResources,        // socket() for the target failed (EMFILE, ENOMEM...)
  kDrained,            // still open when --drain-timeout passed after SIGTERM
  kCount,
};

const char* CloseReasonName(CloseReason reason);

using Counter = std::atomic<uint64_t>;
inline void Bump(Counter& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }
inline uint64_t Load(const Counter& c) { return c.load(std::memory_order_relaxed); }

struct RelayWorkerStats {
  Counter accepted{0};  // connections taken from the source
  Counter active{0};    // open now (a gauge)
  std::array<Counter, static_cast<int>(CloseReason::kCount)> closed{};
  Counter bytes_to_target{0};
  Counter bytes_to_client{0};
  Counter source_errors{0};  // accept/recvmsg errors survived
  Counter source_pauses{0};  // source paused: fds or --max-connections exhausted
  Counter uring_enters{0};

  void Close(CloseReason r) { Bump(closed[static_cast<int>(r)]); }
};

class RelayStats {
 public:
  explicit RelayStats(int workers);
  RelayWorkerStats& worker(int i) { return *workers_[i]; }
  const RelayWorkerStats& worker(int i) const { return *workers_[i]; }
  int worker_count() const { return static_cast<int>(workers_.size()); }

  // Prometheus text exposition (what --metrics-listen serves).
  std::string PrometheusText() const;
  // One "stats ..." line with the totals over all workers.
  std::string Summary() const;

 private:
  std::vector<std::unique_ptr<RelayWorkerStats>> workers_;
};

}  // namespace sbx::relay

#endif  // SBX_RELAY_RELAY_STATS_H_
