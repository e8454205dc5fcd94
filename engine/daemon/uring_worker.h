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
// that first runs them to the end (RunLinked) and stands for the wait when
// it leaves a batch to handle.
//
// The storage the kernel reads for a send (msghdr, iovec, control buffer)
// lives in the message of the send's dispatch slot, named by the
// completion's user_data, until that completion arrives.
#ifndef SBX_ENGINE_DAEMON_URING_WORKER_H_
#define SBX_ENGINE_DAEMON_URING_WORKER_H_

#include <liburing.h>

#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "engine/core/fd_passing.h"
#include "engine/daemon/dispatch_scheduler.h"
#include "engine/daemon/fd_batch.h"
#include "engine/daemon/worker_base.h"
#include "engine/sys/ring.h"

namespace sbx {

class UringWorker : private WorkerBase, private DispatchTransport {
 public:
  UringWorker(const Options& options, WorkerSetup setup, Control* control, StatsRegistry* stats);
  ~UringWorker();
  UringWorker(const UringWorker&) = delete;
  UringWorker& operator=(const UringWorker&) = delete;

  absl::Status Init();
  void Run();  // returns once stopped and drained

 private:
  struct Listener;
  struct RecvState;
  struct AnswerRecv;

  // DispatchTransport.
  void StartSend(uint32_t slot, int conn_fd, Backend* b, bool keep_open) override;
  void CloseConnection(int conn_fd) override;
  void WatchWritable(Backend* b) override;
  void ForcedPeerGone() override;
  void FinishReceiver(Backend* b) override;
  int Probe(Backend* b) override;

  // Receiver protocol: one RECV armed on each path backend's socket for
  // its receiver's hello and acks.
  void ListenForAnswers(Backend* b);
  void ArmAnswer(AnswerRecv* a);
  // Hands a well-formed hello or ack in data[0..len) to the scheduler.
  void ApplyAnswer(Backend* b, const unsigned char* data, ssize_t len);
  void OnAnswer(AnswerRecv* a, int res);
  void ApplyRelayedAnswers();
  void DiscardAnswer(AnswerRecv* a);
  void ResumePausedAnswers(uint64_t now);
  void OnSendCompletion(uint32_t first_slot, int res);

  // Completion handlers.
  void Handle(const io_uring_cqe* cqe);
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

  // The completion at `index` of the completion queue (not yet advanced past).
  const io_uring_cqe* Cqe(unsigned index);

  // Submission queue.
  io_uring_sqe* GetSqe();
  void EnsureSqSpace(unsigned n);
  bool Submit();            // false (after asking the daemon to stop) if the ring failed
  void CheckEnter(int rc);  // counts a submission; a failed ring stops the daemon
  void RunLinked();         // submits, and runs every request waiting behind a link

  // Answer receives: owned here until their completion, listening ones by
  // backend. Declared before the ring, so that the ring goes first.
  absl::flat_hash_map<AnswerRecv*, std::unique_ptr<AnswerRecv>> answers_;
  absl::flat_hash_map<const Backend*, AnswerRecv*> listening_;
  std::vector<RelayedReply> relayed_;        // reused: taken from the relay each turn
  bool said_not_accepting_ = false;          // Control::StoppedAccepting, once
  std::vector<AnswerRecv*> paused_answers_;  // of flooding receivers: armed again later

  Ring ring_;
  bool ring_failed_ = false;

  std::unique_ptr<FdBatch[]> messages_;  // per dispatch slot
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unique_ptr<RecvState> recv_;
  // The link chain being built: sends to one backend prepared back to back
  // in one submission are linked, so that once one finds the queue full the
  // rest are cancelled untried.
  struct Chain {
    const Backend* backend = nullptr;
    io_uring_sqe* tail = nullptr;
    uint64_t submission = 0;
    FdBatch* message = nullptr;  // the chain's last message, still open for more fds
    bool keep_open = false;      // its fds are held (no linked closes)
  } chain_;
  unsigned last_batch_ = 0;           // completions handled last turn
  unsigned unhandled_from_ = 0;       // completions from here on are for the next turn
  uint64_t submissions_ = 0;          // counts submissions (link chains end there)
  unsigned linked_pending_ = 0;       // requests prepared behind a link since the last RunLinked
  io_uring_sqe* last_sqe_ = nullptr;  // the most recently prepared SQE
  uint64_t wake_buffer_ = 0;
  bool stopping_ = false;
  bool fds_freed_ = false;  // a connection left this turn: a starved listener may retry
  int armed_requests_ = 0;  // accepts and registration receives in flight
};

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_URING_WORKER_H_
