// SyncWorker (--io=sync): the classic design in the same binary, for
// comparison and for kernels without what the fast path needs. poll(2) on
// the listeners, accept4(2), getsockname/getpeername as the route needs,
// sendmsg(2) with MSG_DONTWAIT and, on a full queue, poll(2) for room until
// the dispatch deadline, close(2). Same routing, backends, failure
// semantics and counters as the io_uring worker; a few syscalls per
// connection instead of a fraction of one.
#ifndef SBX_ENGINE_DAEMON_SYNC_WORKER_H_
#define SBX_ENGINE_DAEMON_SYNC_WORKER_H_

#include "engine/daemon/worker_base.h"

namespace sbx {

class SyncWorker : private WorkerBase {
 public:
  SyncWorker(const Options& options, WorkerSetup setup, Control* control, StatsRegistry* stats);
  void Run();

 private:
  void AcceptAll(const ListenerInfo& listener);
  void ReceiveRegistered();
  void Deliver(int fd, const ListenerInfo* listener, const SocketAddress* remote);
  // True once sent; false after counting the drop. Closes nothing.
  bool Send(int fd, Backend* backend);
};

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_SYNC_WORKER_H_
