// UringWorker: one thread, one ring (SINGLE_ISSUER | DEFER_TASKRUN), the
// whole hot path of architecture.md:
//   accept    multishot per listener (re-armed when IORING_CQE_F_MORE is
//             missing); when the route needs the remote address, a few
//             single-shot accepts with an address slot each instead, so
//             that no getpeername(2) is needed;
//   classify  Router (no syscall when the listener knows its address or no
//             rule reads it);
//   dispatch  IORING_OP_SENDMSG (MSG_DONTWAIT) with SCM_RIGHTS on the
//             backend's connected datagram socket; when its queue is full,
//             connections wait in order in user space behind one POLLOUT
//             per backend, each up to its deadline;
//   close     IORING_OP_CLOSE of our copy, linked after the send (no
//             completion on success; cancelled, so the copy stays ours, when
//             the send fails);
// all submitted together by one io_uring_submit_and_wait_timeout per turn,
// which under load waits for a batch of completions.
//
// The storage the kernel reads for a send (msghdr, iovec, control buffer)
// lives in a slot named by the completion's user_data until the send's
// completion arrives.
#ifndef SBX_ENGINE_DAEMON_URING_WORKER_H_
#define SBX_ENGINE_DAEMON_URING_WORKER_H_

#include <liburing.h>

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "engine/core/fd_passing.h"
#include "engine/daemon/worker_base.h"

namespace sbx {

class UringWorker : private WorkerBase {
 public:
  UringWorker(const Options& options, WorkerSetup setup, Control* control, StatsRegistry* stats);
  ~UringWorker();
  UringWorker(const UringWorker&) = delete;
  UringWorker& operator=(const UringWorker&) = delete;

  absl::Status Init();
  void Run();  // returns once stopped and drained

 private:
  struct Slot;
  struct Listener;
  struct RecvState;

  // Completion handlers.
  void Handle(const io_uring_cqe* cqe);
  void OnAccept(Listener& l, uint32_t accept_slot, const io_uring_cqe* cqe, bool multishot);
  void OnConnection(int fd, const ListenerInfo* listener, const SocketAddress* remote);
  void OnSendResult(uint32_t slot, int res);
  void OnRegistrationMessage(int res);

  // Actions.
  void Dispatch(int fd, Backend* backend);
  void SubmitSend(uint32_t slot);
  void Wait(uint32_t slot, bool in_order);
  void Pump(Backend* backend, uint64_t now);
  void ArmBackendPoll(Backend* backend);
  void OnBackendWritable(Backend* backend);
  void CloseConnection(uint32_t slot);
  void CloseFd(int fd);
  void Arm(Listener& l);
  void ArmOneAccept(Listener& l, uint32_t accept_slot);
  void CancelAccepts();
  void ArmWake();
  void ArmRegistration();
  void CheckControl();
  void RunTimers(uint64_t now);
  uint64_t NextTimer(uint64_t now) const;
  bool Drained() const;
  io_uring_sqe* GetSqe();
  void EnsureSqSpace(unsigned n);

  uint32_t AllocSlot();
  void FreeSlot(uint32_t slot);

  io_uring ring_{};
  bool ring_ready_ = false;

  std::unique_ptr<Slot[]> slots_;
  std::vector<uint32_t> free_slots_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unique_ptr<RecvState> recv_;
  std::vector<Backend*> troubled_;      // backends with waiting connections
  unsigned last_batch_ = 0;             // completions handled last turn
  uint64_t submit_batch_ = 0;           // counts submissions (link chains end there)
  io_uring_sqe* last_sqe_ = nullptr;    // the most recently prepared SQE
  uint64_t wake_buffer_ = 0;
  uint64_t timeout_ns_ = 0;
  bool stopping_ = false;
  bool slots_paused_ = false;
  int armed_requests_ = 0;  // accepts and registration receives in flight
};

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_URING_WORKER_H_
