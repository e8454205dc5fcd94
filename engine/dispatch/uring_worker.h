// UringWorker: one thread, one ring (SINGLE_ISSUER | DEFER_TASKRUN), the
// whole hot path of architecture.md:
//   accept    multishot per listener (re-armed when IORING_CQE_F_MORE is
//             missing); when the route needs the remote address, a few
//             single-shot accepts with an address slot each instead, so
//             that no getpeername(2) is needed;
//   classify  Router (no syscall when the listener knows its address or no
//             rule reads it);
//   dispatch  DispatchScheduler decides what is sent when; this worker is
//             its transport: IORING_OP_SENDMSG (MSG_DONTWAIT) with
//             SCM_RIGHTS on the backend's connected datagram socket (several
//             fds in one message to a receiver that declared it), and
//             one POLLOUT per congested backend as the writability watch;
//   answers   one RECV per path backend's socket for its receiver's hello
//             and acks (receiver protocol); answers are handled before the
//             other completions of a batch, so that an ack is never read
//             after the failure that ends its socket;
//   close     IORING_OP_CLOSE of our copy, linked after the send (no
//             completion on success; cancelled, so the copy stays ours, when
//             the send fails);
// all submitted together at the end of a turn, by the enter that waits for
// the next batch of completions, or, when the turn linked requests, by one
// that first runs them to the end (WorkerRing::RunLinked) and stands for the
// wait when it leaves a batch to handle.
//
// What this class keeps is the turn loop, the accepts, the -P registration
// receive and the transport's glue; the ring's bookkeeping is WorkerRing,
// the sends' entries and links SendChain, the answers AnswerReceives.
#ifndef SBX_ENGINE_DISPATCH_URING_WORKER_H_
#define SBX_ENGINE_DISPATCH_URING_WORKER_H_

#include <liburing.h>

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "engine/dispatch/answer_receives.h"
#include "engine/dispatch/dispatch_scheduler.h"
#include "engine/dispatch/listener_state.h"
#include "engine/dispatch/send_chain.h"
#include "engine/dispatch/worker_base.h"
#include "engine/dispatch/worker_ring.h"

namespace sbx {

class UringWorker : private WorkerBase, private DispatchTransport {
 public:
  UringWorker(const WorkerConfig& config, WorkerSetup setup, Control* control,
              StatsRegistry* stats);
  ~UringWorker();
  UringWorker(const UringWorker&) = delete;
  UringWorker& operator=(const UringWorker&) = delete;

  absl::Status Init();
  void Run();  // returns once stopped and drained

 private:
  struct Listener;
  struct RecvState;

  // DispatchTransport.
  void StartSend(uint32_t slot, int conn_fd, Backend* b, bool keep_open) override;
  void CloseConnection(int conn_fd) override;
  void WatchWritable(Backend* b) override;
  void ForcedPeerGone() override;
  void FinishReceiver(Backend* b, std::vector<ReceiverMessage>* answers) override;
  int Probe(Backend* b) override;

  // Completion handlers.
  void HandleBatch(const WorkerRing::Batch& batch);
  void Handle(const io_uring_cqe* cqe);
  void OnSendCompletion(uint32_t first_slot, int res);
  void OnAccept(Listener& l, uint32_t accept_slot, const io_uring_cqe* cqe, bool multishot);
  void OnConnection(int fd, const ListenerInfo* listener, const SocketAddress* remote);
  void OnRegistrationMessage(int res);

  // Accepting.
  void Arm(Listener& l);
  void ArmOneAccept(Listener& l, uint32_t accept_slot);
  bool MayArm(const Listener& l, uint64_t now) const;
  void CancelAccepts();
  void ArmWake();
  void ArmRegistration();

  void CheckControl();
  void WaitForCompletions(uint64_t now);
  void RunTimers(uint64_t now);
  uint64_t NextTimer(uint64_t now) const;
  bool Drained() const;

  // What the kernel reads or writes for requests in flight is declared
  // before the ring, so that the ring goes first.
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unique_ptr<RecvState> recv_;
  std::unique_ptr<SendChain> sends_;
  std::unique_ptr<AnswerReceives> answers_;
  uint64_t wake_buffer_ = 0;
  WorkerRing ring_;

  unsigned last_batch_ = 0;  // completions handled last turn
  bool stopping_ = false;
  bool said_not_accepting_ = false;  // Control::StoppedAccepting, once
  int armed_requests_ = 0;           // accepts and registration receives in flight
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_URING_WORKER_H_
