#include "engine/daemon/uring_worker.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "engine/sys/clock.h"
#include "engine/sys/user_data.h"

namespace sbx {
namespace {

constexpr uint32_t kAcceptsWithAddress = 16;  // single-shot accepts per listener
// After EMFILE/ENFILE/ENOMEM/ENOBUFS a listener waits for one of our own
// connections to leave (its fd is then free), or this long.
constexpr uint64_t kResourcePauseNs = 5'000'000;
constexpr uint64_t kIdleWakeNs = 1'000'000'000;
constexpr size_t kRecvControlFds = 16;
// Answers read from one receiver per completion of its RECV (OnAnswer).
constexpr int kAnswersPerTurn = 64;
// An honest receiver answers at most twice per message it was sent (a
// hello from the process that took it, and an ack). One that sent this many
// more than twice the fds it was sent floods: its answers are read
// kAnswersPerTurn at a time, once per kFloodPauseNs, and the rest wait in
// its own socket (charged to its own send buffer, so its sends fail).
constexpr uint64_t kAnswerSlack = 64;
constexpr uint64_t kFloodPauseNs = 10'000'000;

// Adaptive batching: under load, wait for several completions (or a short
// time) per io_uring_enter instead of waking for each one.
constexpr unsigned kMaxWaitBatch = 32;
constexpr uint64_t kBatchWindowNs = 200'000;

enum Op : uint8_t {
  kAccept = 1,
  kAcceptOne,
  kSend,
  kLinkedClose,
  kClose,
  kWake,
  kRecv,
  kCancel,
  kPoll,
  kAnswer
};

uint64_t Tag(Op op, uint32_t index, uint32_t sub = 0) { return PackUserData(op, index, sub); }
Op TagOp(uint64_t data) { return static_cast<Op>(UserDataOp(data)); }

// A POLLOUT on a congested backend names the backend itself. The scheduler
// keeps a backend with an armed watch from being evicted, so the pointer
// stays valid.
uint64_t PollTag(const Backend* b) { return PackUserPointer(kPoll, b); }

// Errors of io_uring_enter that only mean "try again".
bool IsTransientEnterError(int rc) {
  return rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY;
}

}  // namespace

struct UringWorker::Listener {
  ListenerInfo info;
  uint32_t index = 0;         // in listeners_, named by user_data
  bool with_address = false;  // the armed mode: single-shot accepts with address
  int armed = 0;
  bool starved = false;  // the last accept found no fd or memory
  uint64_t resume_at_ns = 0;
  struct AddressSlot {
    sockaddr_storage addr{};
    socklen_t len = sizeof(sockaddr_storage);
    bool armed = false;
  };
  std::unique_ptr<AddressSlot[]> addresses;
};

// One RECV on a backend's socket, for its receiver's answers.
struct UringWorker::AnswerRecv {
  Backend* backend = nullptr;
  int fd = -1;                // the socket it listens on (a reconnect makes a new one)
  uint64_t resume_at_ns = 0;  // paused (not armed) until then: its receiver floods
  unsigned char buffer[kReceiverMessageBytes + 1]{};  // one more: oversized is garbage
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
    : WorkerBase(options, std::move(setup), control, stats) {}

UringWorker::~UringWorker() = default;  // where Listener and RecvState are complete

absl::Status UringWorker::Init() {
  const int err =
      ring_.Init(4096, 4 * kDispatchSlots, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  if (err < 0) return absl::ErrnoToStatus(-err, "io_uring_queue_init");
  backends_.EnableReceiverReplies(setup_.relay, setup_.index);  // before the scheduler: it asks
  MakeScheduler(this);
  messages_.reset(new FdBatch[kDispatchSlots]);  // default-initialized: untouched until used
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

bool UringWorker::Submit() {
  Bump(stats_->uring_enters);
  CheckEnter(ring_.Submit());
  return !ring_failed_;
}

void UringWorker::CheckEnter(int rc) {
  ++submissions_;
  if (rc >= 0 || IsTransientEnterError(rc) || ring_failed_) return;
  // The ring itself failed: nothing this worker submits can work.
  std::fprintf(stderr, "socketbox: worker %d: io_uring_enter: %s; stopping the daemon\n",
               setup_.index, std::strerror(-rc));
  ring_failed_ = true;
  control_->RequestExit(1);
}

const io_uring_cqe* UringWorker::Cqe(unsigned index) {
  io_uring* ring = ring_.get();
  return &ring->cq.cqes[io_uring_cqe_index(ring, index, ring->cq.ring_mask)];
}

io_uring_sqe* UringWorker::GetSqe() {
  io_uring_sqe* sqe = ring_.GetSqe();
  while (sqe == nullptr) {
    // The submission queue is full: hand it to the kernel and go on. A
    // failed ring stops the loop at the end of this turn.
    Submit();
    sqe = ring_.GetSqe();
    if (sqe == nullptr && ring_failed_) {
      // Nothing can be submitted and the daemon is stopping: prepare into a
      // scratch entry the kernel never sees, so callers need no error path.
      static thread_local io_uring_sqe scratch;
      sqe = &scratch;
    }
  }
  last_sqe_ = sqe;
  return sqe;
}

void UringWorker::EnsureSqSpace(unsigned n) {
  if (ring_.SpaceLeft() < n) Submit();
}

void UringWorker::Run() {
  PickUpTable();
  ArmWake();
  if (recv_) {
    ArmRegistration();
  } else {
    for (auto& l : listeners_) Arm(*l);
  }
  while (!ring_failed_) {
    CheckControl();
    // Every accept (and registration receive) cancelled and reaped.
    if (stopping_ && armed_requests_ == 0 && !said_not_accepting_) {
      control_->StoppedAccepting(setup_.index);
      said_not_accepting_ = true;
    }
    if (stopping_ && Drained()) break;
    WaitForCompletions(MonotonicNs());
    if (ring_failed_) return;
    Tick();
    backends_.CloseRetired();  // every SQE that could name these fds is submitted
    // Receivers' answers first: an ack read after the send failure that
    // ends its socket would come too late (the connections it confirms
    // would be sent again).
    //
    // Both passes walk one fixed range: a submission made while handling it
    // (a full submission queue) can post completions at once, and those wait
    // for the next turn, in order, instead of being skipped by the second
    // pass (an answer among them would be lost).
    const unsigned first = *ring_.get()->cq.khead;
    const unsigned end = io_uring_smp_load_acquire(ring_.get()->cq.ktail);
    unhandled_from_ = end;
    for (unsigned i = first; i != end; ++i) {
      const io_uring_cqe* cqe = Cqe(i);
      if (TagOp(cqe->user_data) == kAnswer) {
        OnAnswer(UserDataPointer<AnswerRecv>(cqe->user_data), cqe->res);
      }
    }
    ApplyRelayedAnswers();
    for (unsigned i = first; i != end; ++i) {
      const io_uring_cqe* cqe = Cqe(i);
      if (TagOp(cqe->user_data) != kAnswer) Handle(cqe);
    }
    io_uring_cq_advance(ring_.get(), end - first);
    last_batch_ = end - first;
    RunTimers(now_ns());
  }
  // Anything still queued for submission (closes) goes out before the ring
  // does, and what waits behind a link runs (a ring torn down would leave it
  // unissued, its fds open).
  if (!ring_failed_) {
    if (linked_pending_ > 0) {
      RunLinked();
    } else {
      ring_.Submit();
    }
  }
}

void UringWorker::WaitForCompletions(uint64_t now) {
  const bool batch_wait = ring_.has_min_wait() && options_.batch_wait_us > 0;
  // Busy turns wait for a batch of about half the last one (bounded by a
  // short window); quiet ones for the first completion or the next timer.
  // --batch-wait: up to a full batch within the latency budget; past it, the
  // first completion wakes us (ring.h). Not the default: measured here it
  // cost 30% more CPU per connection below saturation (docs/architecture.md).
  const unsigned wait_nr =
      batch_wait ? kMaxWaitBatch : std::clamp(last_batch_ / 2, 1u, kMaxWaitBatch);
  if (linked_pending_ > 0) {
    RunLinked();
    // It leaves completions to handle (the sends' own, at least): they are
    // this turn's batch, without a wait for more. Waiting on for the
    // adaptive batch cost one more enter per sending turn (measured with a
    // larger bound: 11.75 against 10.21 µs per connection uncapped,
    // docs/architecture.md). --batch-wait keeps its wait: it asked for one.
    if (ring_failed_ || (!batch_wait && ring_.Ready() > 0)) return;
  }
  const uint64_t timeout = NextTimer(now) - now;
  Bump(stats_->uring_enters);
  if (batch_wait) {
    CheckEnter(ring_.SubmitAndWait(wait_nr, timeout,
                                   static_cast<uint64_t>(options_.batch_wait_us) * 1000));
    return;
  }
  CheckEnter(
      ring_.SubmitAndWait(wait_nr, wait_nr > 1 ? std::min(timeout, kBatchWindowNs) : timeout, 0));
}

void UringWorker::RunLinked() {
  // Requests behind a linked one (the closes after a send, the next message
  // of a chain) run as deferred task work, and an enter runs that work only
  // until the completions it waits for are there: with completions ready, a
  // chain moves a link or two per enter (Ring::SubmitAndRunLinked). Left so,
  // a 16-fd message's closes took several turns; the backend, done with the
  // connections first, left the TCP teardown to us, which past capacity
  // cost 3x the CPU per connection and fed on itself. So a turn that linked
  // runs its chains to the end before it waits, in an enter asked for one
  // completion per linked request on top of those already there (the
  // kernel counts those too). A bound that also covered the requests in
  // flight (accepts, answers, watches) never let the enter end before its
  // zero timeout, whose timer cost 1.2 µs per connection uncapped (9.87
  // against 8.67 in one run); the price of not covering them is that
  // completions of those requests during the enter can end it early (many
  // single-shot accepts in address mode), leaving a few links to a later
  // enter.
  const unsigned bound = linked_pending_ + ring_.Ready();
  Bump(stats_->uring_enters);
  const int rc = ring_.SubmitAndRunLinked(bound);
  CheckEnter(rc);
  if (rc >= 0 || rc == -ETIME) linked_pending_ = 0;
}

void UringWorker::Handle(const io_uring_cqe* cqe) {
  const uint64_t data = cqe->user_data;
  switch (TagOp(data)) {
    case kAccept:
    case kAcceptOne:
      OnAccept(*listeners_[UserDataIndex(data)], UserDataSub(data), cqe, TagOp(data) == kAccept);
      break;
    case kSend:
      OnSendCompletion(UserDataIndex(data), cqe->res);
      break;
    case kLinkedClose:
      // Only failures post a completion. ECANCELED: the send before it
      // failed, so the connection is still ours (the scheduler decides).
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
      scheduler_->OnWritable(UserDataPointer<Backend>(data));
      break;
    case kCancel:
    case kAnswer:  // handled before the others
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
  const FdBatch& m = messages_[first_slot];
  uint32_t slots[FdBatch::kCapacity];
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
    l.starved = false;
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
      // The connection stays queued in the kernel (accept takes the fd
      // first); try again once one of ours has left, or shortly.
      if (!l.starved) Bump(stats_->accept_resource_pauses);
      l.starved = true;
      l.resume_at_ns = now_ns() + kResourcePauseNs;
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
  // SENDMSG linked to the CLOSE of our copy: on success the kernel closes it
  // right after the send, with no completion and nothing more to submit; on
  // failure the close is cancelled and the connection stays ours. A held
  // connection (keep_open) gets no CLOSE: the scheduler closes it at the ack.
  //
  // MSG_DONTWAIT: a full backend queue answers EAGAIN at once, and the
  // scheduler asks for one POLLOUT; sends left waiting in the kernel would
  // all be woken each time the backend reads one message.
  //
  // Consecutive sends to one backend form one link chain: once one finds
  // the queue full, the rest are cancelled without being tried and go back
  // in line. Links are positional (an SQE links to the next one in the
  // ring), so a chain grows only while nothing else was prepared in
  // between, and never across two submissions. To a receiver that takes
  // several fds per message, such a send joins the chain's last message
  // instead, while it has room: SENDMSG, CLOSE, CLOSE, ... with the closes
  // hard-linked to each other (each runs whatever the one before did) and
  // all cancelled if the send fails.
  ListenForAnswers(b);  // before the chain test: a new RECV ends the chain
  auto chained = [&] {
    return chain_.backend == b && chain_.tail == last_sqe_ && chain_.submission == submissions_;
  };
  const bool joins = chained() && chain_.message != nullptr && chain_.keep_open == keep_open &&
                     chain_.message->count < b->receiver.max_fds && !chain_.message->full();
  // Room for what this call prepares (a CLOSE to join the open message; a
  // SENDMSG and its CLOSE otherwise), so that no link is cut by a
  // submission; a submission made here ends the chain (chained() is then
  // false).
  EnsureSqSpace(joins ? 1 : 2);
  if (joins && chained()) {
    chain_.message->Add(slot, conn_fd);
    if (!keep_open) {
      chain_.tail->flags |= IOSQE_IO_HARDLINK;
      ++linked_pending_;
      io_uring_sqe* close = GetSqe();
      io_uring_prep_close(close, conn_fd);
      close->flags |= IOSQE_CQE_SKIP_SUCCESS;
      io_uring_sqe_set_data64(close, Tag(kLinkedClose, slot));
      chain_.tail = close;
    }
    return;
  }
  if (chained()) {
    // After a CLOSE, a hard link: its failure (never expected) must not
    // cancel the next message, whose sends would then post no completion
    // (the close skips its own). After a held message's SENDMSG, a plain
    // link: a full queue cancels the rest untried.
    chain_.tail->flags |= chain_.keep_open ? IOSQE_IO_LINK : IOSQE_IO_HARDLINK;
    ++linked_pending_;
  }
  FdBatch& message = messages_[slot];
  message.Start(slot, conn_fd);
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_sendmsg(sqe, b->fd(), &message.hdr, MSG_NOSIGNAL | MSG_DONTWAIT);
  io_uring_sqe_set_data64(sqe, Tag(kSend, slot));
  io_uring_sqe* tail = sqe;
  if (!keep_open) {
    sqe->flags |= IOSQE_IO_LINK;
    ++linked_pending_;
    io_uring_sqe* close = GetSqe();
    io_uring_prep_close(close, conn_fd);
    close->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(close, Tag(kLinkedClose, slot));
    tail = close;
  }
  chain_ = {b, tail, submissions_, &message, keep_open};
}

void UringWorker::ListenForAnswers(Backend* b) {
  if (b->path.empty() || b->substituted || !b->socket) return;
  auto it = listening_.find(b);
  if (it != listening_.end()) {
    if (it->second->fd == b->fd()) return;
    // A receive left on an old socket (it would keep that socket open).
    DiscardAnswer(it->second);
    listening_.erase(it);
  }
  EnsureSqSpace(2);
  auto owned = std::make_unique<AnswerRecv>();
  AnswerRecv* a = owned.get();
  a->backend = b;
  a->fd = b->fd();
  answers_.emplace(a, std::move(owned));
  listening_[b] = a;
  ArmAnswer(a);
}

void UringWorker::ArmAnswer(AnswerRecv* a) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_recv(sqe, a->fd, a->buffer, sizeof(a->buffer), 0);
  io_uring_sqe_set_data64(sqe, PackUserPointer(kAnswer, a));
}

void UringWorker::ApplyAnswer(Backend* b, const unsigned char* data, ssize_t len) {
  // Anything that is not a message of the protocol (garbage, an empty
  // datagram) is ignored.
  ReceiverMessage message;
  if (len > 0 && DecodeReceiverMessage(data, static_cast<size_t>(len), &message)) {
    scheduler_->OnReceiverMessage(b, message);
  }
}

void UringWorker::OnAnswer(AnswerRecv* a, int res) {
  auto it = listening_.find(a->backend);
  const bool current = it != listening_.end() && it->second == a;
  ReceiverState& r = a->backend->receiver;
  if (current) {
    if (res >= 0) ++r.answers;
    ApplyAnswer(a->backend, a->buffer, res);
    // What else is queued is read now, up to a bound: one enter per batch
    // of answers, not per answer (a receiver flooding acks or empty
    // datagrams cost one io_uring_enter each), and a flood waits in its own
    // socket past the bound instead of taking the turn.
    if (res >= 0) {
      unsigned char buffer[kReceiverMessageBytes + 1];
      ssize_t n;
      for (int more = 1; more < kAnswersPerTurn; ++more) {
        n = ::recv(a->fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n < 0) break;
        ++r.answers;
        ApplyAnswer(a->backend, buffer, n);
      }
    }
    if (res >= 0 && r.answers > 2 * r.fds_sent + kAnswerSlack) {
      a->resume_at_ns = now_ns() + kFloodPauseNs;
      paused_answers_.push_back(a);
      return;
    }
  }
  // Still listening while stopping: held connections wait for their acks.
  if (current && (res >= 0 || res == -EAGAIN || res == -EINTR)) {
    ArmAnswer(a);
    return;
  }
  if (current) listening_.erase(it);
  answers_.erase(a);
}

// Answers from receivers in other network namespaces (reply_relay.h):
// each counts only if this worker's socket for the channel's backend still
// has the name the receiver answered.
void UringWorker::ApplyRelayedAnswers() {
  if (setup_.relay == nullptr || !setup_.relay->HasPending(setup_.index)) return;
  setup_.relay->TakePending(setup_.index, &relayed_);
  for (const RelayedReply& r : relayed_) {
    Backend* b = backends_.Find(r.path);
    if (b != nullptr && !b->reply_name.empty() && b->reply_name == r.sender) {
      ApplyAnswer(b, r.message, kReceiverMessageBytes);
    }
  }
}

void UringWorker::FinishReceiver(Backend* b) {
  auto it = listening_.find(b);
  if (it == listening_.end()) return;
  AnswerRecv* a = it->second;
  // An answer its receive took but whose completion waits for the next turn
  // (posted by a submission made during this one) is applied now; when
  // that completion comes, the receive is no longer current and it is
  // dropped. Answers of this turn's range were handled before its sends.
  const unsigned tail = io_uring_smp_load_acquire(ring_.get()->cq.ktail);
  for (unsigned i = unhandled_from_; i != tail; ++i) {
    const io_uring_cqe* cqe = Cqe(i);
    if (cqe->user_data == PackUserPointer(kAnswer, a)) ApplyAnswer(b, a->buffer, cqe->res);
  }
  // Answers still queued on the socket, or relayed and not yet applied, are
  // read now, before it is retired.
  ApplyRelayedAnswers();
  unsigned char buffer[kReceiverMessageBytes + 1];
  ssize_t n;
  while ((n = ::recv(b->fd(), buffer, sizeof(buffer), MSG_DONTWAIT)) >= 0 || errno == EINTR) {
    ApplyAnswer(b, buffer, n);
  }
  DiscardAnswer(a);
  listening_.erase(it);
}

// Ends the receive of `a`: cancelled if armed (its completion then frees
// it), freed now if paused.
void UringWorker::DiscardAnswer(AnswerRecv* a) {
  auto paused = std::find(paused_answers_.begin(), paused_answers_.end(), a);
  if (paused != paused_answers_.end()) {
    paused_answers_.erase(paused);
    answers_.erase(a);
    return;
  }
  io_uring_sqe* cancel = GetSqe();
  io_uring_prep_cancel64(cancel, PackUserPointer(kAnswer, a), 0);
  io_uring_sqe_set_data64(cancel, Tag(kCancel, 0));
}

void UringWorker::ResumePausedAnswers(uint64_t now) {
  for (size_t i = 0; i < paused_answers_.size();) {
    AnswerRecv* a = paused_answers_[i];
    if (now < a->resume_at_ns) {
      ++i;
      continue;
    }
    paused_answers_[i] = paused_answers_.back();
    paused_answers_.pop_back();
    ArmAnswer(a);
  }
}

int UringWorker::Probe(Backend* b) {
  // A receive that failed (not a cancel) left this socket unheard until its
  // next send; a probe means acks are awaited, so listen again first.
  ListenForAnswers(b);
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
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_close(sqe, fd);
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(sqe, Tag(kClose, 0));
}

void UringWorker::WatchWritable(Backend* b) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_poll_add(sqe, b->fd(), POLLOUT);
  io_uring_sqe_set_data64(sqe, PollTag(b));
}

void UringWorker::ForcedPeerGone() {
  // The original exits 11 when the -i peer is gone (EPIPE on a stream; a
  // datagram pair says ECONNREFUSED): nothing more can be delivered.
  control_->RequestExit(11);
}

bool UringWorker::MayArm(const Listener& l, uint64_t now) const {
  if (stopping_ || slots_paused_) return false;
  return !l.starved || fds_freed_ || now >= l.resume_at_ns;
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
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_multishot_accept(sqe, l.info.fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, Tag(kAccept, l.index));
  ++l.armed;
  ++armed_requests_;
}

void UringWorker::ArmOneAccept(Listener& l, uint32_t k) {
  auto& a = l.addresses[k];
  a.len = sizeof(a.addr);
  a.armed = true;
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
      io_uring_sqe* sqe = GetSqe();
      io_uring_prep_cancel_fd(sqe, setup_.registration_fd, IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(sqe, Tag(kCancel, 0));
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
  ResumePausedAnswers(now);
  scheduler_->RunTimers();
  RefillFdReserve();
}

uint64_t UringWorker::NextTimer(uint64_t now) const {
  uint64_t next = scheduler_->NextTimer(now, kIdleWakeNs);
  for (const auto& l : listeners_) {
    if (l->starved && l->resume_at_ns > now) next = std::min(next, l->resume_at_ns);
  }
  for (const AnswerRecv* a : paused_answers_) next = std::min(next, a->resume_at_ns);
  return std::max(next, now + 1000);
}

bool UringWorker::Drained() const { return scheduler_->idle() && armed_requests_ == 0; }

}  // namespace sbx
