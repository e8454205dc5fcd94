// SyncWorker (--io=sync): the classic design in the same binary, for
// comparison and for kernels without what the fast path needs. poll(2) on
// the listeners, accept4(2), getsockname/getpeername as the route needs,
// sendmsg(2) with MSG_DONTWAIT and, on a full queue, poll(2) for room until
// the dispatch deadline, close(2). Same routing, backends, failure
// semantics and counters as the io_uring worker; a few syscalls per
// connection instead of a fraction of one.
#ifndef SBX_ENGINE_DAEMON_SYNC_WORKER_H_
#define SBX_ENGINE_DAEMON_SYNC_WORKER_H_

#include "engine/daemon/backend_table.h"
#include "engine/daemon/control.h"
#include "engine/daemon/options.h"
#include "engine/daemon/router.h"
#include "engine/daemon/stats.h"
#include "engine/daemon/uring_worker.h"  // WorkerSetup

namespace sbx {

class SyncWorker {
 public:
  SyncWorker(const Options& options, WorkerSetup setup, Control* control, StatsRegistry* stats);
  void Run();

 private:
  void AcceptAll(const ListenerInfo& listener);
  void ReceiveRegistered();
  void Deliver(int fd, const ListenerInfo* listener, const SocketAddress* remote);
  // True once sent; false after counting the drop. Closes nothing.
  bool Send(int fd, Backend* backend);

  const Options& options_;
  WorkerSetup setup_;
  Control* control_;
  WorkerStats* stats_;
  BackendTable backends_;
  Router router_;
  uint64_t seen_generation_ = 0;
  std::vector<UniqueFd> graveyard_;
};

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_SYNC_WORKER_H_
