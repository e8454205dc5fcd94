// Counters: every connection is either delivered to a backend or closed and
// counted under a reason. Each worker writes its own counters (relaxed
// atomics, no sharing on the hot path); the main thread reads and prints
// them on SIGUSR1, every --stats-interval seconds, and at exit.
#ifndef SBX_ENGINE_DISPATCH_STATS_H_
#define SBX_ENGINE_DISPATCH_STATS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/kernel/listener_registry.h"

namespace sbx {

enum class DropReason : int {
  kNoDecision,   // jump to a missing set, or the step limit
  kFail,         // the configuration said fail
  kBackendDown,  // backend missing or refusing until the deadline
  kTimeout,      // backend queue stayed full until the deadline
  kSendError,    // any other send error
  kOverload,     // no dispatch slot free (accepts pause before this)
  kSocketError,  // getsockname/getpeername/-z setsockopt failed
  kResources,    // the daemon itself lacked fds or memory until the deadline
  kBackendLost,  // an acknowledging receiver's socket went away with it unread
  kCount,
};

const char* DropReasonName(DropReason reason);

using Counter = std::atomic<uint64_t>;

struct WorkerStats {
  Counter accepted{0};
  Counter dispatched{0};
  std::array<Counter, static_cast<int>(DropReason::kCount)> dropped{};
  Counter accept_errors{0};           // transient accept errors, counted and survived
  Counter accept_resource_pauses{0};  // accept said EMFILE/ENFILE/ENOMEM/ENOBUFS
  Counter accept_slot_pauses{0};      // dispatch slots ran low: accepting paused
  Counter getsockname_calls{0};
  Counter getpeername_calls{0};
  Counter uring_enters{0};  // io_uring_enter calls (submit and wait)
  Counter close_errors{0};
  Counter messages{0};     // fd messages sent (several fds each to receivers that take them)
  Counter redelivered{0};  // sent again after an acknowledging receiver lost them
  Counter unconfirmed{0};  // held for an ack that never came: released as dispatched

  void Drop(DropReason reason) {
    dropped[static_cast<int>(reason)].fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t TotalDropped() const;
};

inline void Bump(Counter& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }

// Counters shared by all workers: per-worker blocks and per-backend
// delivery counts (by configured path, before -U substitution).
class StatsRegistry {
 public:
  explicit StatsRegistry(int workers);

  WorkerStats& worker(int i) { return *workers_[i]; }
  const WorkerStats& worker(int i) const { return *workers_[i]; }
  int worker_count() const { return static_cast<int>(workers_.size()); }

  // A stable counter for `backend`; created on first use (mutex, not hot).
  Counter* BackendCounter(std::string_view backend);

  // "stats worker=N accepted=... dropped.fail=..." lines, one per worker,
  // then "stats total ..." and "stats backend PATH delivered=N" lines.
  std::string Format() const;

  // (configured path, delivered) for every backend seen so far, by path.
  std::vector<std::pair<std::string, uint64_t>> BackendDeliveries() const;

  // Kernel dispatch's counters (kept in the kernel's maps), read when the
  // counters are printed or scraped. Set once, before the workers start.
  void SetKernelCounts(std::function<KernelDispatchCounts()> source) {
    kernel_counts_ = std::move(source);
  }
  std::optional<KernelDispatchCounts> KernelCounts() const {
    if (!kernel_counts_) return std::nullopt;
    return kernel_counts_();
  }

  // SIGHUP reloads, written by the main thread.
  Counter reloads{0};
  Counter reload_failures{0};

 private:
  std::vector<std::unique_ptr<WorkerStats>> workers_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Counter>, std::less<>> backends_;
  std::function<KernelDispatchCounts()> kernel_counts_;
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_STATS_H_
