// What the io_uring worker and the sync worker hold and do alike: the
// per-worker parts (options, listeners, control, counters, backends,
// router), picking up a reloaded table, admitting a new connection, and
// what the end of a registration channel means. The two differ only in how
// they accept and send.
#ifndef SBX_ENGINE_DISPATCH_WORKER_BASE_H_
#define SBX_ENGINE_DISPATCH_WORKER_BASE_H_

#include <cstdint>
#include <vector>

#include "engine/dispatch/backend_table.h"
#include "engine/dispatch/control.h"
#include "engine/dispatch/dispatch_scheduler.h"
#include "engine/dispatch/router.h"
#include "engine/dispatch/stats.h"
#include "engine/dispatch/worker_config.h"
#include "engine/sys/clock.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

struct WorkerSetup {
  int index = 0;
  int workers = 1;  // how many there are in all
  std::vector<ListenerInfo> listeners;
  int registration_fd = -1;         // -P mode: receive sockets here instead
  FdReserve* fd_reserve = nullptr;  // shared by all workers; may be null
  ReplyRelay* relay = nullptr;      // kernel dispatch's answers from other namespaces
};

class WorkerBase {
 protected:
  // Connected sockets cached for -U's substituted paths, per worker.
  static constexpr size_t kMaxSubstitutedBackends = 1024;
  // Connections a worker holds between accept and hand-over; accepting
  // pauses below the low water mark of free slots, resumes above the high.
  static constexpr uint32_t kDispatchSlots = 16384;
  static constexpr uint32_t kDispatchSlotsLowWater = 1024;
  static constexpr uint32_t kDispatchSlotsHighWater = 8192;
  // One backend holds at most an eighth of a worker's slots, and of its
  // share of the fd limit (at least kMinBackendShare): a backend that never
  // reads or never acks costs the others nothing beyond that.
  static constexpr uint32_t kBackendShareDivisor = 8;
  static constexpr uint32_t kMinBackendShare = 64;

  WorkerBase(const WorkerConfig& config, WorkerSetup setup, Control* control, StatsRegistry* stats);

  // Adopts the newest published configuration; true if it changed.
  bool PickUpTable();

  // The worker's clock: read once per turn (after each wait), not per
  // connection, whose clock reads once showed in the engine's profile
  // (docs/architecture.md). Deadlines are milliseconds; a turn is far
  // shorter.
  void Tick() { now_ns_ = MonotonicNs(); }
  uint64_t now_ns() const { return now_ns_; }

  // Makes the dispatch scheduler, with `transport` (the worker itself) and
  // the options' deadline; called once, before anything is dispatched.
  void MakeScheduler(DispatchTransport* transport);
  // The slots one backend may hold (DispatchScheduler::Config::backend_share).
  uint32_t BackendShare() const;

  // Counts a new connection (`fd`, owned from here on), routes it and hands
  // it to the scheduler (or closes it after counting why not). True when free dispatch slots just
  // ran low: the caller stops accepting until slots_paused_ clears.
  bool TakeConnection(int fd, const ListenerInfo* listener, const SocketAddress* remote);
  // Clears slots_paused_ once enough slots are free again.
  void ResumeWhenSlotsFree();

  // Connections received from the registration server that fail the
  // strict check: counted; the caller closes them.
  void RejectRegistered(uint64_t n = 1) { Bump(stats_->accept_errors, n); }

  // Gives back reserve fds that were used, while fds are free.
  void RefillFdReserve() {
    if (setup_.fd_reserve != nullptr) setup_.fd_reserve->Refill();
  }

  // The registration channel ended (`err` 0: the server went away) or
  // failed (`err`: the errno): logs it and asks the daemon to exit, 0 or 1.
  void RegistrationEnded(int err);

  const WorkerConfig config_;
  WorkerSetup setup_;
  Control* control_;
  WorkerStats* stats_;
  BackendTable backends_;
  Router router_;
  std::unique_ptr<DispatchScheduler> scheduler_;
  bool slots_paused_ = false;  // dispatch slots ran low: not accepting
  bool fds_freed_ = false;     // a connection left this turn: a starved listener may retry

 private:
  // Counts a new connection and routes it: its backend, or nullptr after
  // counting why not.
  Backend* Admit(int fd, const ListenerInfo* listener, const SocketAddress* remote);

  DispatchTransport* transport_ = nullptr;
  uint64_t seen_generation_ = 0;
  uint64_t now_ns_ = MonotonicNs();
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_WORKER_BASE_H_
