// SyncWorker (--io=sync): the classic design in the same binary, for
// comparison and for kernels without what the fast path needs. poll(2) on
// the listeners and on congested backends, accept4(2),
// getsockname/getpeername as the route needs, sendmsg(2) with MSG_DONTWAIT,
// close(2). The same DispatchScheduler as the io_uring worker decides what
// is sent when, so routing, per-backend queues, deadlines, failure
// semantics and counters are the same; one stopped backend stalls only its
// own connections. A few syscalls per connection instead of a fraction of
// one.
#ifndef SBX_ENGINE_DISPATCH_SYNC_WORKER_H_
#define SBX_ENGINE_DISPATCH_SYNC_WORKER_H_

#include <memory>
#include <utility>
#include <vector>

#include "engine/dispatch/dispatch_scheduler.h"
#include "engine/dispatch/listener_state.h"
#include "engine/dispatch/worker_base.h"

namespace sbx {

class SyncWorker : private WorkerBase, private DispatchTransport {
 public:
  SyncWorker(const WorkerConfig& config, WorkerSetup setup, Control* control, StatsRegistry* stats);
  void Run();

 private:
  struct Listener {
    ListenerInfo info;
    ListenerState state;
  };

  // DispatchTransport: a send is made at once; its result is handed to the
  // scheduler by DeliverResults, as a completion would be.
  void StartSend(uint32_t slot, int conn_fd, Backend* b, bool keep_open) override;
  void CloseConnection(int conn_fd) override;
  void WatchWritable(Backend* b) override;
  void ForcedPeerGone() override;
  // The baseline speaks no receiver protocol: its sockets have no name, so
  // no receiver answers, and nothing is ever held.
  void FinishReceiver(Backend*, std::vector<ReceiverMessage>*) override {}
  int Probe(Backend*) override { return 0; }
  void DeliverResults();

  void AcceptSome(Listener& l);
  void ReceiveRegistered();
  bool Polled(const Listener& l, uint64_t now) const;
  uint64_t NextTimer(uint64_t now) const;

  std::vector<Listener> listeners_;
  std::vector<std::pair<uint32_t, int>> results_;  // (slot, send result)
  // Backends whose send failed since the results were last delivered: the
  // next sends to them are not tried (as a failed link cancels the rest of
  // an io_uring chain), so order is kept.
  std::vector<const Backend*> failed_;
  std::vector<Backend*> watched_;  // congested backends waiting for POLLOUT
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_SYNC_WORKER_H_
