#include "engine/daemon/uring_worker.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "engine/core/str_cat.h"
#include "engine/sys/clock.h"
#include "engine/sys/socket_ops.h"

namespace sbx {
namespace {

constexpr uint32_t kSlotCount = 16384;
constexpr uint32_t kSlotsLowWater = 1024;    // pause accepting below this many free
constexpr uint32_t kSlotsHighWater = 8192;   // resume above
constexpr uint32_t kAcceptsWithAddress = 16; // single-shot accepts per listener
constexpr uint64_t kResourcePauseNs = 100'000'000;
constexpr uint64_t kIdleWakeNs = 1'000'000'000;
constexpr size_t kRecvControlFds = 16;
// Adaptive batching: under load, wait for several completions (or a short
// time) per io_uring_enter instead of waking for each one.
constexpr unsigned kMaxWaitBatch = 32;
constexpr uint64_t kBatchWindowNs = 200'000;

enum Op : uint8_t { kAccept = 1, kAcceptOne, kSend, kLinkedClose, kClose, kWake, kRecv, kCancel, kPoll };

uint64_t Tag(Op op, uint32_t index, uint32_t sub = 0) {
  return static_cast<uint64_t>(op) << 56 | static_cast<uint64_t>(sub & 0xffffff) << 32 | index;
}
Op TagOp(uint64_t data) { return static_cast<Op>(data >> 56); }
uint32_t TagIndex(uint64_t data) { return static_cast<uint32_t>(data); }
uint32_t TagSub(uint64_t data) { return static_cast<uint32_t>(data >> 32) & 0xffffff; }

// A POLLOUT on a congested backend names the backend itself (user-space
// pointers fit in the 56 bits below the op).
uint64_t PollTag(const Backend* b) {
  return static_cast<uint64_t>(kPoll) << 56 | reinterpret_cast<uintptr_t>(b);
}
Backend* PollBackend(uint64_t data) {
  return reinterpret_cast<Backend*>(static_cast<uintptr_t>(data & ((uint64_t{1} << 56) - 1)));
}

// Sends released by one POLLOUT: about what a default backend queue
// (net.unix.max_dgram_qlen = 10) can take before it is full again.
constexpr uint32_t kPumpBurst = 16;

__kernel_timespec ToTimespec(uint64_t ns) {
  return {static_cast<long long>(ns / 1'000'000'000), static_cast<long long>(ns % 1'000'000'000)};
}

bool IsResourceError(int err) {
  return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS;
}

}  // namespace

struct UringWorker::Slot {
  FdMessage message;
  int conn_fd = -1;
  Backend* backend = nullptr;
  uint64_t deadline_ns = 0;
  enum class State : uint8_t { kFree, kSending, kWaiting } state = State::kFree;
};

struct UringWorker::Listener {
  ListenerInfo info;
  uint32_t index = 0;  // in listeners_, named by user_data
  bool with_address = false;  // the armed mode: single-shot accepts with address
  int armed = 0;
  uint64_t resume_at_ns = 0;
  struct AddressSlot {
    sockaddr_storage addr{};
    socklen_t len = sizeof(sockaddr_storage);
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

UringWorker::UringWorker(const Options& options, WorkerSetup setup, Control* control,
                         StatsRegistry* stats)
    : WorkerBase(options, std::move(setup), control, stats),
      timeout_ns_(static_cast<uint64_t>(options.dispatch_timeout_ms) * 1'000'000) {}

UringWorker::~UringWorker() {
  if (ring_ready_) io_uring_queue_exit(&ring_);
}

absl::Status UringWorker::Init() {
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  params.cq_entries = 4 * kSlotCount;
  const int err = io_uring_queue_init_params(4096, &ring_, &params);
  if (err < 0) return absl::ErrnoToStatus(-err, "io_uring_queue_init");
  ring_ready_ = true;
  slots_ = std::make_unique<Slot[]>(kSlotCount);
  free_slots_.reserve(kSlotCount);
  for (uint32_t i = kSlotCount; i > 0; --i) free_slots_.push_back(i - 1);
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

io_uring_sqe* UringWorker::GetSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // The submission queue is full: hand it to the kernel and go on.
    Bump(stats_->uring_enters);
    io_uring_submit(&ring_);
    ++submit_batch_;
    sqe = io_uring_get_sqe(&ring_);
  }
  last_sqe_ = sqe;
  return sqe;
}

void UringWorker::EnsureSqSpace(unsigned n) {
  if (io_uring_sq_space_left(&ring_) < n) {
    Bump(stats_->uring_enters);
    io_uring_submit(&ring_);
    ++submit_batch_;
  }
}

uint32_t UringWorker::AllocSlot() {
  if (free_slots_.empty()) return UINT32_MAX;
  const uint32_t i = free_slots_.back();
  free_slots_.pop_back();
  return i;
}

void UringWorker::FreeSlot(uint32_t i) {
  Slot& s = slots_[i];
  s.state = Slot::State::kFree;
  s.backend = nullptr;
  s.conn_fd = -1;
  free_slots_.push_back(i);
}

void UringWorker::Run() {
  PickUpTable();
  ArmWake();
  if (recv_) {
    ArmRegistration();
  } else {
    for (auto& l : listeners_) Arm(*l);
  }
  while (true) {
    CheckControl();
    if (stopping_ && Drained()) break;
    const uint64_t now = MonotonicNs();
    // Busy turns wait for a batch (bounded by a short window); quiet ones
    // for the first completion or the next timer.
    const unsigned wait_nr = std::clamp(last_batch_ / 2, 1u, kMaxWaitBatch);
    uint64_t wait_ns = NextTimer(now) - now;
    if (wait_nr > 1) wait_ns = std::min(wait_ns, kBatchWindowNs);
    __kernel_timespec ts = ToTimespec(wait_ns);
    io_uring_cqe* cqe = nullptr;
    Bump(stats_->uring_enters);
    const int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, wait_nr, &ts, nullptr);
    ++submit_batch_;
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      // The ring itself failed: nothing this worker submits can work.
      std::fprintf(stderr, "socketbox: worker %d: io_uring_enter: %s; stopping the daemon\n",
                   setup_.index, std::strerror(-rc));
      control_->RequestExit(1);
      return;
    }
    graveyard_.clear();  // every SQE that could name these fds is submitted
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      Handle(cqe);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    last_batch_ = seen;
    RunTimers(MonotonicNs());
  }
  // Anything still queued for submission (closes) goes out before the ring does.
  io_uring_submit(&ring_);
}

void UringWorker::Handle(const io_uring_cqe* cqe) {
  const uint64_t data = cqe->user_data;
  switch (TagOp(data)) {
    case kAccept:
    case kAcceptOne:
      OnAccept(*listeners_[TagIndex(data)], TagSub(data), cqe, TagOp(data) == kAccept);
      break;
    case kSend:
      OnSendResult(TagIndex(data), cqe->res);
      break;
    case kLinkedClose:
      // Only failures post a completion. ECANCELED: the send before it
      // failed, so the connection is still ours (OnSendResult decides).
      if (cqe->res < 0 && cqe->res != -ECANCELED) Bump(stats_->close_errors);
      break;
    case kClose:
      if (cqe->res < 0) Bump(stats_->close_errors);
      break;
    case kWake:
      ArmWake();
      break;
    case kRecv:
      recv_->armed = false;
      --armed_requests_;
      OnRegistrationMessage(cqe->res);
      break;
    case kPoll:
      OnBackendWritable(PollBackend(data));
      break;
    case kCancel:
      break;
  }
}

void UringWorker::OnAccept(Listener& l, uint32_t accept_slot, const io_uring_cqe* cqe,
                           bool multishot) {
  const bool still_armed = multishot && (cqe->flags & IORING_CQE_F_MORE) != 0;
  if (!still_armed) {
    --l.armed;
    --armed_requests_;
  }
  if (cqe->res >= 0) {
    SocketAddress remote;
    const SocketAddress* remote_ptr = nullptr;
    if (!multishot) {
      const auto& a = l.addresses[accept_slot];
      if (auto parsed = SocketAddress::FromSockaddr(reinterpret_cast<const sockaddr*>(&a.addr), a.len)) {
        remote = *parsed;
        remote_ptr = &remote;
      }
    }
    OnConnection(cqe->res, &l.info, remote_ptr);
  } else if (cqe->res != -ECANCELED) {
    const int err = -cqe->res;
    if (IsResourceError(err)) {
      Bump(stats_->accept_pauses);
      l.resume_at_ns = MonotonicNs() + kResourcePauseNs;
    } else {
      Bump(stats_->accept_errors);
    }
  }
  // Single-shot accepts with an address come back one at a time: re-arm
  // this one at once unless paused, stopping, or the mode changed.
  if (!multishot && !still_armed && !stopping_ && !slots_paused_ && l.with_address &&
      router_.needs_remote() && MonotonicNs() >= l.resume_at_ns) {
    ArmOneAccept(l, accept_slot);
  }
}

void UringWorker::OnConnection(int fd, const ListenerInfo* listener, const SocketAddress* remote) {
  Backend* backend = Admit(fd, listener, remote);
  if (backend == nullptr) {
    CloseFd(fd);
    return;
  }
  Dispatch(fd, backend);
}

void UringWorker::Dispatch(int fd, Backend* backend) {
  const uint32_t i = AllocSlot();
  if (i == UINT32_MAX) {
    stats_->Drop(DropReason::kOverload);
    CloseFd(fd);
    return;
  }
  if (!slots_paused_ && free_slots_.size() < kSlotsLowWater) {
    // Let the kernel's backlog hold new connections until slots free up.
    slots_paused_ = true;
    Bump(stats_->accept_pauses);
    CancelAccepts();
  }
  Slot& s = slots_[i];
  s.conn_fd = fd;
  s.backend = backend;
  s.deadline_ns = MonotonicNs() + timeout_ns_;
  // Behind others already waiting for this backend, in order.
  if (!backend->waiting.empty() || backend->congested ||
      (backend->down && !backends_.TryReconnect(backend, MonotonicNs()))) {
    Wait(i, /*in_order=*/false);
    return;
  }
  SubmitSend(i);
}

void UringWorker::SubmitSend(uint32_t i) {
  Slot& s = slots_[i];
  Backend* b = s.backend;
  // SENDMSG linked to the CLOSE of our copy: on success the kernel closes it
  // right after the send, with no completion and nothing more to submit; on
  // failure the close is cancelled and the connection stays ours.
  //
  // MSG_DONTWAIT: a full backend queue answers EAGAIN at once, and the
  // backend gets one POLLOUT (OnSendResult); sends left waiting in the
  // kernel would all be woken each time the backend reads one message.
  //
  // Consecutive sends to one backend form one link chain: once one finds
  // the queue full, the rest are cancelled without being tried and go back
  // in line. Links are positional (an SQE links to the next one in the
  // ring), so a chain grows only while nothing else was prepared in
  // between, and never across two submissions.
  EnsureSqSpace(2);
  if (b->chain_tail != nullptr && b->chain_tail == last_sqe_ && b->chain_batch == submit_batch_) {
    b->chain_tail->flags |= IOSQE_IO_LINK;
  }
  s.message.Prepare(s.conn_fd);
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_sendmsg(sqe, b->fd(), &s.message.hdr, MSG_NOSIGNAL | MSG_DONTWAIT);
  io_uring_sqe_set_data64(sqe, Tag(kSend, i));
  sqe->flags |= IOSQE_IO_LINK;
  io_uring_sqe* close = GetSqe();
  io_uring_prep_close(close, s.conn_fd);
  close->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(close, Tag(kLinkedClose, i));
  b->chain_tail = close;
  b->chain_batch = submit_batch_;
  s.state = Slot::State::kSending;
  ++b->in_flight;
}

void UringWorker::Wait(uint32_t i, bool in_order) {
  Slot& s = slots_[i];
  s.state = Slot::State::kWaiting;
  auto& q = s.backend->waiting;
  if (in_order) {
    // A send that came back goes before every later dispatch (deadlines
    // follow dispatch order) and after those that came back before it.
    auto at = q.begin();
    while (at != q.end() && slots_[*at].deadline_ns <= s.deadline_ns) ++at;
    q.insert(at, i);
  } else {
    q.push_back(i);
  }
  if (std::find(troubled_.begin(), troubled_.end(), s.backend) == troubled_.end()) {
    troubled_.push_back(s.backend);
  }
}

void UringWorker::ArmBackendPoll(Backend* b) {
  if (b->poll_armed) return;
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_poll_add(sqe, b->fd(), POLLOUT);
  io_uring_sqe_set_data64(sqe, PollTag(b));
  b->poll_armed = true;
}

void UringWorker::OnBackendWritable(Backend* b) {
  b->poll_armed = false;
  b->congested = false;
  Pump(b, MonotonicNs());
}

void UringWorker::Pump(Backend* b, uint64_t now) {
  // After a POLLOUT the queue may have room for one or two only: send about
  // as many as went through last time, plus one, up to a burst. The rest go
  // out on later turns (NextTimer does not sleep while a writable backend
  // has connections waiting).
  const uint32_t burst = std::clamp(b->last_pump_ok + 1, 1u, kPumpBurst);
  b->last_pump_ok = 0;
  uint32_t sent = 0;
  while (!b->waiting.empty() && !b->down && !b->congested && sent < burst) {
    const uint32_t i = b->waiting.front();
    b->waiting.pop_front();
    if (slots_[i].deadline_ns <= now) {
      stats_->Drop(DropReason::kTimeout);
      CloseConnection(i);
      continue;
    }
    SubmitSend(i);
    ++sent;
  }
}

void UringWorker::OnSendResult(uint32_t i, int res) {
  Slot& s = slots_[i];
  Backend* b = s.backend;
  --b->in_flight;
  if (res >= 0) {
    Bump(stats_->dispatched);
    Bump(*b->delivered);
    ++b->last_pump_ok;
    FreeSlot(i);  // the linked CLOSE takes care of our copy
    return;
  }
  const int err = -res;
  const uint64_t now = MonotonicNs();
  if (err == ECANCELED) {
    // An earlier link of this backend's chain failed, and that one's result
    // decides about the backend. This one was not tried: back in line.
    Wait(i, /*in_order=*/true);
    return;
  }
  if (err == EAGAIN || err == EWOULDBLOCK) {
    if (timeout_ns_ == 0 || now >= s.deadline_ns) {  // --dispatch-timeout 0: no waiting
      stats_->Drop(DropReason::kTimeout);
      CloseConnection(i);
      return;
    }
    // The backend's queue is full: back in line, and one POLLOUT for all.
    b->congested = true;
    Wait(i, /*in_order=*/true);
    ArmBackendPoll(b);
    return;
  }
  if (b->reconnectable() && IsBackendGone(err)) {
    backends_.MarkDown(b, err, now, &graveyard_);
    b->congested = false;
    if (now < s.deadline_ns) {
      Wait(i, /*in_order=*/true);
      return;
    }
    stats_->Drop(DropReason::kBackendDown);
    CloseConnection(i);
    return;
  }
  stats_->Drop(DropReason::kSendError);
  backends_.LogTrouble(b, "send failed", err, now);
  CloseConnection(i);
  if (options_.forced_fd && IsBackendGone(err)) {
    // The original exits 11 when the -i peer is gone (EPIPE on a stream;
    // a datagram pair says ECONNREFUSED): nothing more can be delivered.
    control_->RequestExit(11);
  }
}

void UringWorker::CloseConnection(uint32_t i) {
  CloseFd(slots_[i].conn_fd);
  FreeSlot(i);
}

void UringWorker::CloseFd(int fd) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_close(sqe, fd);
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(sqe, Tag(kClose, 0));
}

void UringWorker::Arm(Listener& l) {
  if (l.armed > 0) return;
  l.with_address = router_.needs_remote();
  if (l.with_address) {
    for (uint32_t k = 0; k < kAcceptsWithAddress; ++k) ArmOneAccept(l, k);
    return;
  }
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_multishot_accept(sqe, l.info.fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, Tag(kAccept, l.index));
  ++l.armed;
  ++armed_requests_;
}

void UringWorker::ArmOneAccept(Listener& l, uint32_t k) {
  auto& a = l.addresses[k];
  a.len = sizeof(a.addr);
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_accept(sqe, l.info.fd, reinterpret_cast<sockaddr*>(&a.addr), &a.len, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, Tag(kAcceptOne, l.index, k));
  ++l.armed;
  ++armed_requests_;
}

void UringWorker::CancelAccepts() {
  for (auto& l : listeners_) {
    if (l->armed == 0) continue;
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_cancel_fd(sqe, l->info.fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, Tag(kCancel, 0));
  }
}

void UringWorker::ArmWake() {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_read(sqe, control_->wake_fd(setup_.index), &wake_buffer_, sizeof(wake_buffer_), 0);
  io_uring_sqe_set_data64(sqe, Tag(kWake, 0));
}

void UringWorker::ArmRegistration() {
  RecvState& r = *recv_;
  r.iov = {r.payload, sizeof(r.payload)};
  r.hdr = {};
  r.hdr.msg_iov = &r.iov;
  r.hdr.msg_iovlen = 1;
  r.hdr.msg_control = r.control;
  r.hdr.msg_controllen = sizeof(r.control);
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_recvmsg(sqe, setup_.registration_fd, &r.hdr, MSG_CMSG_CLOEXEC);
  io_uring_sqe_set_data64(sqe, Tag(kRecv, 0));
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
      CloseFd(first);
    }
  } else if (res == 0 || res == -ECONNRESET || res == -ENOTCONN) {
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
      io_uring_sqe* sqe = GetSqe();
      io_uring_prep_cancel_fd(sqe, setup_.registration_fd, IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(sqe, Tag(kCancel, 0));
    }
  }
}

void UringWorker::RunTimers(uint64_t now) {
  if (slots_paused_ && free_slots_.size() > kSlotsHighWater) slots_paused_ = false;
  if (!stopping_ && !slots_paused_) {
    for (auto& l : listeners_) {
      if (l->armed == 0 && now >= l->resume_at_ns) Arm(*l);
    }
  }
  for (size_t t = 0; t < troubled_.size();) {
    Backend* b = troubled_[t];
    // Waiting connections past their deadline are closed and counted.
    while (!b->waiting.empty() && slots_[b->waiting.front()].deadline_ns <= now) {
      const uint32_t i = b->waiting.front();
      b->waiting.pop_front();
      stats_->Drop(b->down ? DropReason::kBackendDown : DropReason::kTimeout);
      CloseConnection(i);
    }
    if (!b->waiting.empty() && (!b->down || backends_.TryReconnect(b, now))) Pump(b, now);
    if (b->waiting.empty()) {
      troubled_[t] = troubled_.back();
      troubled_.pop_back();
    } else {
      ++t;
    }
  }
}

uint64_t UringWorker::NextTimer(uint64_t now) const {
  uint64_t next = now + kIdleWakeNs;
  for (const auto& l : listeners_) {
    if (l->armed == 0 && l->resume_at_ns > now) next = std::min(next, l->resume_at_ns);
  }
  for (const Backend* b : troubled_) {
    if (b->down) next = std::min(next, std::max(b->retry_at_ns, now + 1'000'000));
    if (!b->congested && !b->down) next = now;  // more to pump
    if (!b->waiting.empty()) next = std::min(next, slots_[b->waiting.front()].deadline_ns);
  }
  return std::max(next, now + 1000);
}

bool UringWorker::Drained() const {
  return free_slots_.size() == kSlotCount && armed_requests_ == 0;
}

}  // namespace sbx
