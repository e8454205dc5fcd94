#include "engine/dispatch/uring_worker.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/core/fd_passing.h"
#include "engine/dispatch/uring_ops.h"
#include "engine/sys/clock.h"

namespace sbx {
namespace {

constexpr uint32_t kAcceptsWithAddress = 16;  // single-shot accepts per listener
constexpr uint64_t kIdleWakeNs = 1'000'000'000;
constexpr size_t kRecvControlFds = 16;

// Adaptive batching: under load, wait for several completions (or a short
// time) per io_uring_enter instead of waking for each one.
constexpr unsigned kMaxWaitBatch = 32;
constexpr uint64_t kBatchWindowNs = 200'000;

}  // namespace

struct UringWorker::Listener {
  ListenerInfo info;
  uint32_t index = 0;         // in listeners_, named by user_data
  bool with_address = false;  // the armed mode: single-shot accepts with address
  int armed = 0;
  ListenerState state;
  struct AddressSlot {
    sockaddr_storage addr{};
    socklen_t len = sizeof(sockaddr_storage);
    bool armed = false;
  };
  std::unique_ptr<AddressSlot[]> addresses;
};

struct UringWorker::RecvState {
  msghdr hdr{};
  iovec iov{};
  unsigned char payload[16]{};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(kRecvControlFds * sizeof(int))]{};
  bool armed = false;
};

UringWorker::UringWorker(const WorkerConfig& config, WorkerSetup setup, Control* control,
                         StatsRegistry* stats)
    : WorkerBase(config, std::move(setup), control, stats),
      ring_(&stats_->uring_enters, [this](int err) {
        std::fprintf(stderr, "socketbox: worker %d: io_uring_enter: %s; stopping the daemon\n",
                     setup_.index, std::strerror(err));
        control_->RequestExit(1);
      }) {}

UringWorker::~UringWorker() = default;  // where Listener and RecvState are complete

absl::Status UringWorker::Init() {
  const int err =
      ring_.Init(4096, 4 * kDispatchSlots, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  if (err < 0) return absl::ErrnoToStatus(-err, "io_uring_queue_init");
  backends_.EnableReceiverReplies(setup_.relay, setup_.index);  // before the scheduler: it asks
  MakeScheduler(this);
  sends_ = std::make_unique<SendChain>(&ring_, kDispatchSlots);
  answers_ = std::make_unique<AnswerReceives>(&ring_, scheduler_.get(), &backends_, setup_.relay,
                                              setup_.index);
  for (const ListenerInfo& info : setup_.listeners) {
    auto l = std::make_unique<Listener>();
    l->info = info;
    l->index = static_cast<uint32_t>(listeners_.size());
    l->addresses = std::make_unique<Listener::AddressSlot[]>(kAcceptsWithAddress);
    listeners_.push_back(std::move(l));
  }
  if (setup_.registration_fd >= 0) recv_ = std::make_unique<RecvState>();
  return absl::OkStatus();
}

void UringWorker::Run() {
  PickUpTable();
  ArmWake();
  if (recv_) {
    ArmRegistration();
  } else {
    for (auto& l : listeners_) Arm(*l);
  }
  while (!ring_.failed()) {
    CheckControl();
    // Every accept (and registration receive) cancelled and reaped.
    if (stopping_ && armed_requests_ == 0 && !said_not_accepting_) {
      control_->StoppedAccepting(setup_.index);
      said_not_accepting_ = true;
    }
    if (stopping_ && Drained()) break;
    WaitForCompletions(MonotonicNs());
    if (ring_.failed()) return;
    Tick();
    backends_.CloseRetired();  // every SQE that could name these fds is submitted
    HandleBatch(ring_.TakeBatch());
    RunTimers(now_ns());
  }
  // Anything still queued for submission (closes) goes out before the ring
  // does, and what waits behind a link runs.
  ring_.Flush();
}

void UringWorker::WaitForCompletions(uint64_t now) {
  const bool batch_wait = ring_.has_min_wait() && config_.batch_wait_us > 0;
  // Busy turns wait for a batch of about half the last one (bounded by a
  // short window); quiet ones for the first completion or the next timer.
  // --batch-wait: up to a full batch within the latency budget; past it, the
  // first completion wakes us (ring.h). Not the default: below saturation
  // it cost more CPU per connection (docs/architecture.md, "The kernel's
  // min-wait").
  const unsigned wait_nr =
      batch_wait ? kMaxWaitBatch : std::clamp(last_batch_ / 2, 1u, kMaxWaitBatch);
  if (ring_.has_linked()) {
    ring_.RunLinked();
    // It leaves completions to handle (the sends' own, at least): they are
    // this turn's batch, without a wait for more, which would cost one more
    // enter per sending turn (docs/architecture.md, "Linked requests run to
    // the end"). --batch-wait keeps its wait: it asked for one.
    if (ring_.failed() || (!batch_wait && ring_.Ready() > 0)) return;
  }
  const uint64_t timeout = NextTimer(now) - now;
  if (batch_wait) {
    ring_.SubmitAndWait(wait_nr, timeout, static_cast<uint64_t>(config_.batch_wait_us) * 1000);
    return;
  }
  ring_.SubmitAndWait(wait_nr, wait_nr > 1 ? std::min(timeout, kBatchWindowNs) : timeout, 0);
}

void UringWorker::HandleBatch(const WorkerRing::Batch& batch) {
  // Receivers' answers first: an ack read after the send failure that ends
  // its socket would come too late (the connections it confirms would be
  // sent again).
  //
  // Both passes walk one fixed range: a submission made while handling it
  // (a full submission queue) can post completions at once, and those wait
  // for the next turn, in order, instead of being skipped by the second
  // pass (an answer among them would be lost).
  for (unsigned i = batch.first; i != batch.end; ++i) {
    const io_uring_cqe* cqe = ring_.At(i);
    if (UringOpOf(cqe->user_data) == UringOp::kAnswer) {
      answers_->OnCompletion(cqe->user_data, cqe->res, now_ns());
    }
  }
  answers_->ApplyRelayed();
  for (unsigned i = batch.first; i != batch.end; ++i) {
    const io_uring_cqe* cqe = ring_.At(i);
    if (UringOpOf(cqe->user_data) != UringOp::kAnswer) Handle(cqe);
  }
  ring_.Consume(batch);
  last_batch_ = batch.size();
}

void UringWorker::Handle(const io_uring_cqe* cqe) {
  const uint64_t data = cqe->user_data;
  switch (UringOpOf(data)) {
    case UringOp::kAccept:
    case UringOp::kAcceptOne:
      OnAccept(*listeners_[UserDataIndex(data)], UserDataSub(data), cqe,
               UringOpOf(data) == UringOp::kAccept);
      break;
    case UringOp::kSend:
      OnSendCompletion(UserDataIndex(data), cqe->res);
      break;
    case UringOp::kLinkedClose:
      // Only failures post a completion. ECANCELED: the send before it
      // failed, so the connection is still ours (the scheduler decides).
      if (cqe->res < 0 && cqe->res != -ECANCELED) Bump(stats_->close_errors);
      break;
    case UringOp::kClose:
      if (cqe->res < 0) Bump(stats_->close_errors);
      break;
    case UringOp::kWake:
      ArmWake();
      break;
    case UringOp::kRecv:
      recv_->armed = false;
      --armed_requests_;
      OnRegistrationMessage(cqe->res);
      break;
    case UringOp::kPoll:
      scheduler_->OnWritable(UserDataPointer<Backend>(data));
      break;
    case UringOp::kCancel:
    case UringOp::kAnswer:  // handled before the others
      break;
  }
}

void UringWorker::OnSendCompletion(uint32_t first_slot, int res) {
  if (res >= 0) {
    fds_freed_ = true;  // the linked CLOSEs follow
    Bump(stats_->messages);
  }
  // One result for every connection in the message: a datagram is queued
  // whole or not at all. Copied first: results may free the first slot.
  const FdBatch& m = sends_->message(first_slot);
  uint32_t slots[FdBatch::kFdsPerMessageLimit];
  const unsigned count = m.count;
  std::copy(m.slots, m.slots + count, slots);
  for (unsigned k = 0; k < count; ++k) scheduler_->OnSendResult(slots[k], res);
}

void UringWorker::OnAccept(Listener& l, uint32_t accept_slot, const io_uring_cqe* cqe,
                           bool multishot) {
  const bool still_armed = multishot && (cqe->flags & IORING_CQE_F_MORE) != 0;
  if (!still_armed) {
    --l.armed;
    --armed_requests_;
    if (!multishot) l.addresses[accept_slot].armed = false;
  }
  if (cqe->res >= 0) {
    l.state.Accepted();
    SocketAddress remote;
    const SocketAddress* remote_ptr = nullptr;
    if (!multishot) {
      const auto& a = l.addresses[accept_slot];
      if (auto parsed =
              SocketAddress::FromSockaddr(reinterpret_cast<const sockaddr*>(&a.addr), a.len)) {
        remote = *parsed;
        remote_ptr = &remote;
      }
    }
    OnConnection(cqe->res, &l.info, remote_ptr);
  } else if (cqe->res != -ECANCELED) {
    const int err = -cqe->res;
    if (IsResourceShortage(err)) {
      if (l.state.Starved(now_ns())) Bump(stats_->accept_resource_pauses);
    } else {
      Bump(stats_->accept_errors);
    }
  }
  // Single-shot accepts with an address come back one at a time: re-arm
  // this one at once unless paused, stopping, or the mode changed.
  if (!multishot && !still_armed && l.with_address && router_.needs_remote() &&
      MayArm(l, now_ns())) {
    ArmOneAccept(l, accept_slot);
  }
}

void UringWorker::OnConnection(int fd, const ListenerInfo* listener, const SocketAddress* remote) {
  if (TakeConnection(fd, listener, remote)) CancelAccepts();
}

void UringWorker::StartSend(uint32_t slot, int conn_fd, Backend* b, bool keep_open) {
  answers_->Listen(b);  // before the send: a new RECV ends the chain
  sends_->Add(slot, conn_fd, *b, keep_open);
}

void UringWorker::FinishReceiver(Backend* b, std::vector<ReceiverMessage>* answers) {
  answers_->Finish(b, answers);
}

int UringWorker::Probe(Backend* b) {
  // A receive that failed (not a cancel) left this socket unheard until its
  // next send; a probe means acks are awaited, so listen again first.
  answers_->Listen(b);
  iovec iov{const_cast<unsigned char*>(kProbePayload), sizeof(kProbePayload)};
  msghdr hdr{};
  hdr.msg_iov = &iov;
  hdr.msg_iovlen = 1;
  while (::sendmsg(b->fd(), &hdr, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) return -errno;
  }
  return 0;
}

void UringWorker::CloseConnection(int fd) {
  fds_freed_ = true;
  io_uring_sqe* sqe = ring_.Get();
  io_uring_prep_close(sqe, fd);
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(sqe, UringTag(UringOp::kClose, 0));
}

void UringWorker::WatchWritable(Backend* b) {
  io_uring_sqe* sqe = ring_.Get();
  io_uring_prep_poll_add(sqe, b->fd(), POLLOUT);
  // Named by the backend itself: the scheduler keeps a backend with an
  // armed watch from being evicted, so the pointer stays valid.
  io_uring_sqe_set_data64(sqe, UringTag(UringOp::kPoll, b));
}

void UringWorker::ForcedPeerGone() {
  // The original exits 11 when the -i peer is gone (EPIPE on a stream; a
  // datagram pair says ECONNREFUSED): nothing more can be delivered.
  control_->RequestExit(11);
}

bool UringWorker::MayArm(const Listener& l, uint64_t now) const {
  return l.state.MayAccept(!stopping_ && !slots_paused_, fds_freed_, now);
}

void UringWorker::Arm(Listener& l) {
  l.with_address = router_.needs_remote();
  if (l.with_address) {
    for (uint32_t k = 0; k < kAcceptsWithAddress; ++k) {
      if (!l.addresses[k].armed) ArmOneAccept(l, k);
    }
    return;
  }
  if (l.armed > 0) return;
  io_uring_sqe* sqe = ring_.Get();
  io_uring_prep_multishot_accept(sqe, l.info.fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, UringTag(UringOp::kAccept, l.index));
  ++l.armed;
  ++armed_requests_;
}

void UringWorker::ArmOneAccept(Listener& l, uint32_t k) {
  auto& a = l.addresses[k];
  a.len = sizeof(a.addr);
  a.armed = true;
  io_uring_sqe* sqe = ring_.Get();
  io_uring_prep_accept(sqe, l.info.fd, reinterpret_cast<sockaddr*>(&a.addr), &a.len, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, UringTag(UringOp::kAcceptOne, l.index, k));
  ++l.armed;
  ++armed_requests_;
}

void UringWorker::CancelAccepts() {
  for (auto& l : listeners_) {
    if (l->armed == 0) continue;
    io_uring_sqe* sqe = ring_.Get();
    io_uring_prep_cancel_fd(sqe, l->info.fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, UringTag(UringOp::kCancel, 0));
  }
}

void UringWorker::ArmWake() {
  io_uring_sqe* sqe = ring_.Get();
  io_uring_prep_read(sqe, control_->wake_fd(setup_.index), &wake_buffer_, sizeof(wake_buffer_), 0);
  io_uring_sqe_set_data64(sqe, UringTag(UringOp::kWake, 0));
}

void UringWorker::ArmRegistration() {
  RecvState& r = *recv_;
  r.iov = {r.payload, sizeof(r.payload)};
  r.hdr = {};
  r.hdr.msg_iov = &r.iov;
  r.hdr.msg_iovlen = 1;
  r.hdr.msg_control = r.control;
  r.hdr.msg_controllen = sizeof(r.control);
  io_uring_sqe* sqe = ring_.Get();
  io_uring_prep_recvmsg(sqe, setup_.registration_fd, &r.hdr, MSG_CMSG_CLOEXEC);
  io_uring_sqe_set_data64(sqe, UringTag(UringOp::kRecv, 0));
  r.armed = true;
  ++armed_requests_;
}

void UringWorker::OnRegistrationMessage(int res) {
  RecvState& r = *recv_;
  const int first = res >= 0 ? TakeFirstFdCloseRest(&r.hdr) : -1;
  if (first >= 0) {
    if (FdPassesStrictLevel(first, StrictLevel::kStreamInetUnix)) {
      OnConnection(first, nullptr, nullptr);
    } else {
      RejectRegistered();
      CloseConnection(first);
    }
  } else if ((res == 0 && SenderGoneAfterEmptyRead(setup_.registration_fd)) || res == -ECONNRESET ||
             res == -ENOTCONN) {
    RegistrationEnded(0);
    return;
  } else if (res < 0 && res != -EINTR && res != -EAGAIN && res != -ECANCELED) {
    RegistrationEnded(-res);
    return;
  }
  if (!stopping_) ArmRegistration();
}

void UringWorker::CheckControl() {
  if (PickUpTable()) {
    // The accept mode follows what the new table needs.
    for (auto& l : listeners_) {
      if (l->armed > 0 && l->with_address != router_.needs_remote()) CancelAccepts();
    }
  }
  if (!stopping_ && control_->stopping()) {
    stopping_ = true;
    CancelAccepts();
    if (recv_ && recv_->armed) {
      io_uring_sqe* sqe = ring_.Get();
      io_uring_prep_cancel_fd(sqe, setup_.registration_fd, IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(sqe, UringTag(UringOp::kCancel, 0));
    }
  }
}

void UringWorker::RunTimers(uint64_t now) {
  ResumeWhenSlotsFree();
  for (auto& l : listeners_) {
    if (!MayArm(*l, now)) continue;
    // A listener re-arms when nothing is armed (in the mode the table needs
    // now), and tops up single-shot accepts left unarmed while starved.
    const bool same_mode = l->with_address == router_.needs_remote();
    if (l->armed == 0 ||
        (same_mode && l->with_address && l->armed < static_cast<int>(kAcceptsWithAddress))) {
      Arm(*l);
    }
  }
  fds_freed_ = false;
  answers_->ResumePaused(now);
  scheduler_->RunTimers();
  RefillFdReserve();
}

uint64_t UringWorker::NextTimer(uint64_t now) const {
  uint64_t next = scheduler_->NextTimer(now, kIdleWakeNs);
  for (const auto& l : listeners_) {
    next = l->state.NextRetry(now, next);
  }
  next = answers_->NextResume(next);
  return std::max(next, now + 1000);
}

bool UringWorker::Drained() const { return scheduler_->idle() && armed_requests_ == 0; }

}  // namespace sbx
