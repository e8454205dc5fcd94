#include "relay/relay_worker.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>

#include "engine/core/fd_passing.h"
#include "engine/core/str_cat.h"
#include "engine/sys/clock.h"
#include "engine/sys/socket_ops.h"
#include "engine/sys/user_data.h"
#include "relay/diagnostics.h"
#include "relay/log.h"

namespace sbx::relay {
namespace {

constexpr unsigned kRingEntries = 1024;
constexpr unsigned kCqEntries = 32768;
constexpr long kTickNs = 250'000'000;

}  // namespace

RelayWorker::RelayWorker(int index, const RelayOptions& options, const Source& source,
                         RelayWorkerStats& stats)
    : index_(index), options_(options), source_(source), stats_(stats) {
  wake_fd_.Reset(::eventfd(0, EFD_CLOEXEC));
  tick_.tv_nsec = kTickNs;
}

RelayWorker::~RelayWorker() {
  while (connections_ != nullptr) {
    Connection* c = connections_;
    connections_ = c->next;
    delete c;
  }
}

void RelayWorker::RequestStop() {
  stop_requested_.store(true);
  const uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
}

absl::Status RelayWorker::SetUpRing() {
  if (!wake_fd_) return absl::ErrnoToStatus(errno, "eventfd");
  // Kernels before 6.1 refuse DEFER_TASKRUN: a plain ring then.
  const int ret = ring_.InitWithFallback(
      kRingEntries, kCqEntries, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, 0);
  if (ret < 0)
    return absl::ErrnoToStatus(-ret, StrCat("io_uring_queue_init (worker ", index_, ")"));
  return absl::OkStatus();
}

io_uring_sqe* RelayWorker::Sqe() {
  while (true) {
    if (io_uring_sqe* sqe = ring_.GetSqe()) return sqe;
    // A full queue is handed over first. One the kernel took nothing of, or
    // refused for now (short of memory), is tried again; once the ring has
    // failed for good, the entry goes nowhere and Run stops the worker.
    const int rc = ring_.Submit();
    if (rc < 0 && !IsTransientEnterError(rc)) {
      ring_error_ = rc;
      static thread_local io_uring_sqe scratch;
      return &scratch;
    }
  }
}

void RelayWorker::Submit(io_uring_sqe* sqe, Connection* c, Op op) {
  io_uring_sqe_set_data64(sqe, c != nullptr ? PackUserPointer(op, c) : PackUserData(op, 0));
  if (c != nullptr) ++c->inflight;
}

absl::Status RelayWorker::Run() {
  if (absl::Status s = SetUpRing(); !s.ok()) {
    // Said at once: the relay stops rather than serve without this worker.
    Log("%s; stopping the relay", std::string(s.message()).c_str());
    failed_.store(true);  // before finished_: the main thread reads both
    finished_.store(true);
    return s;
  }
  ArmWake();
  ArmTick();
  ArmSource();
  while (!Done()) {
    const int rc = ring_error_ != 0 ? ring_error_ : ring_.SubmitAndWait(1, kNoTimeout, 0);
    if (rc < 0 && !IsTransientEnterError(rc)) return Fail(rc);
    ring_.ForEachCompletion([this](const io_uring_cqe* cqe) { Dispatch(cqe); });
    // This worker is the counter's only writer.
    stats_.uring_enters.store(ring_.enter_calls(), std::memory_order_relaxed);
  }
  ring_.Submit();  // the closes of the last connections
  finished_.store(true);
  return absl::OkStatus();
}

absl::Status RelayWorker::Fail(int rc) {
  Log("worker %d: io_uring_enter: %s; stopping the relay", index_, std::strerror(-rc));
  // Nothing in flight will complete: the ring goes first (its requests are
  // cancelled and waited for, so none writes into a connection's buffers
  // afterwards), then each connection is reset, closed and counted as
  // drained, as a drain that timed out would have.
  ring_.Exit();
  while (connections_ != nullptr) {
    Connection* c = connections_;
    connections_ = c->next;
    SetResetOnClose(c->client.get());
    SetResetOnClose(c->target.get());
    stats_.Close(CloseReason::kDrained);
    stats_.active.fetch_sub(1, std::memory_order_relaxed);
    delete c;  // closes its sockets and pipes
  }
  open_ = 0;
  failed_.store(true);  // before finished_: the main thread reads both
  finished_.store(true);
  return absl::ErrnoToStatus(-rc, StrCat("io_uring_enter (worker ", index_, ")"));
}

bool RelayWorker::Done() const {
  return source_closed_ && !source_inflight_ && connections_ == nullptr;
}

void RelayWorker::Dispatch(const io_uring_cqe* cqe) {
  const uint64_t data = io_uring_cqe_get_data64(cqe);
  const int res = cqe->res;
  const auto op = static_cast<Op>(UserDataOp(data));
  if (op < kConnectOp) {
    switch (op) {
      case kSourceOp:
        OnSource(res);
        break;
      case kTickOp:
        OnTick();
        break;
      case kWakeOp:
        OnWake();
        break;
      default:
        break;  // kSourceCancelOp, a failed kCloseOp: nothing to do
    }
    return;
  }
  auto* c = UserDataPointer<Connection>(data);
  --c->inflight;
  const bool splice = options_.copy == CopyMode::kSplice;
  switch (op) {
    case kConnectOp:
      OnConnect(c, res);
      break;
    case kHeaderOp:
      OnHeader(c, res);
      break;
    case kUpReadOp:
      splice ? OnReady(c, c->up, kUpReadOp) : OnRead(c, c->up, res);
      break;
    case kUpWriteOp:
      splice ? OnReady(c, c->up, kUpWriteOp) : OnWrite(c, c->up, res);
      break;
    case kDownReadOp:
      splice ? OnReady(c, c->down, kDownReadOp) : OnRead(c, c->down, res);
      break;
    case kDownWriteOp:
      splice ? OnReady(c, c->down, kDownWriteOp) : OnWrite(c, c->down, res);
      break;
    case kUpShutOp:
      OnShutdown(c, c->up);
      break;
    case kDownShutOp:
      OnShutdown(c, c->down);
      break;
    default:
      break;  // kCancelOp
  }
  MaybeFree(c);
}

// --- Connections ----------------------------------------------------------

void RelayWorker::StartConnect(Connection* c) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_connect(sqe, c->target.get(),
                        reinterpret_cast<const sockaddr*>(&c->target_address.addr),
                        c->target_address.len);
  Submit(sqe, c, kConnectOp);
}

void RelayWorker::OnConnect(Connection* c, int res) {
  if (c->state == ConnState::kClosing) return;
  if (res < 0) {
    const int err = -res;
    CloseReason reason = CloseReason::kTargetUnreachable;
    LogKind kind = kLogUnreachable;
    if (err == ECONNREFUSED || err == ENOENT) {
      reason = CloseReason::kTargetRefused;
      kind = kLogRefused;
    }
    LogCause(kind, "connecting to the target failed", err, c->target_address.text);
    BeginClose(c, reason, /*reset_client=*/true, false);
    return;
  }
  c->state = ConnState::kRelaying;
  c->last_activity_ns = MonotonicNs();
  if (options_.copy == CopyMode::kSplice) {
    // splice(2) from a socket blocks unless the socket itself is non-blocking.
    ::fcntl(c->client.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(c->target.get(), F_SETFL, O_NONBLOCK);
  }
  if (!c->header.empty()) {
    SendHeader(c);
  } else {
    StartRead(c, c->up, kUpReadOp, /*poll_first=*/true);
  }
  StartRead(c, c->down, kDownReadOp, /*poll_first=*/true);
}

void RelayWorker::SendHeader(Connection* c) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_send(sqe, c->target.get(), c->header.data(), c->header.size(), MSG_NOSIGNAL);
  Submit(sqe, c, kHeaderOp);
}

void RelayWorker::OnHeader(Connection* c, int res) {
  if (c->state == ConnState::kClosing) return;
  if (res <= 0) {
    LogCause(kLogProxyClosed, "the target closed before taking the PROXY header", -res,
             c->target_address.text);
    BeginClose(c, CloseReason::kProxyTargetClosed, true, true);
    return;
  }
  c->header.erase(0, static_cast<size_t>(res));
  if (!c->header.empty()) {
    SendHeader(c);
  } else {
    StartRead(c, c->up, kUpReadOp);
  }
}

void RelayWorker::StartRead(Connection* c, Direction& d, Op op, bool poll_first) {
  if (!d.buffer) {
    SpliceIn(c, d, op);
    return;
  }
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_recv(sqe, d.from, d.buffer.get(), options_.buffer_size, 0);
  // Right after connecting, nothing has usually arrived yet: wait for
  // readiness instead of a receive that fails with EAGAIN first.
  if (poll_first) sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
  Submit(sqe, c, op);
}

void RelayWorker::StartWrite(Connection* c, Direction& d, Op op) {
  if (!d.buffer) {
    SpliceOut(c, d, op);
    return;
  }
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_send(sqe, d.to, d.buffer.get() + d.offset, d.pending, MSG_NOSIGNAL);
  Submit(sqe, c, op);
}

// Splice mode: splice(2) moves the bytes here, non-blocking, and io_uring
// only waits for readiness (IORING_OP_POLL_ADD, whose completion brings us
// back). io_uring's own SPLICE request always runs in an io-wq worker
// thread, which costs more CPU than the copy it saves (measured: docs/relay.md).
// The results go through OnRead/OnWrite like the buffered path's; a direction
// that keeps succeeding yields to the others after kSpliceRounds.
void RelayWorker::WaitFor(Connection* c, int fd, unsigned events, Op op) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_poll_add(sqe, fd, events);
  Submit(sqe, c, op);
}

void RelayWorker::SpliceIn(Connection* c, Direction& d, Op op) {
  if (c->state == ConnState::kClosing) return;  // an earlier step closed it
  if (++d.rounds > kSpliceRounds) {
    d.rounds = 0;
    WaitFor(c, d.from, POLLIN, op);
    return;
  }
  const ssize_t n = ::splice(d.from, nullptr, d.pipe_write.get(), nullptr, options_.buffer_size,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n < 0 && errno == EAGAIN) {
    d.rounds = 0;
    WaitFor(c, d.from, POLLIN, op);
    return;
  }
  OnRead(c, d, n < 0 ? -errno : static_cast<int>(n));
}

void RelayWorker::SpliceOut(Connection* c, Direction& d, Op op) {
  if (c->state == ConnState::kClosing) return;
  const ssize_t n = ::splice(d.pipe_read.get(), nullptr, d.to, nullptr, d.pending,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n < 0 && errno == EAGAIN) {
    d.rounds = 0;
    WaitFor(c, d.to, POLLOUT, op);
    return;
  }
  OnWrite(c, d, n < 0 ? -errno : static_cast<int>(n));
}

// A readiness poll came back (splice mode): try the splice again.
// Whatever the poll reported (even an error), the splice tells what it was.
void RelayWorker::OnReady(Connection* c, Direction& d, Op op) {
  if (c->state == ConnState::kClosing) return;
  if (op == kUpReadOp || op == kDownReadOp) {
    SpliceIn(c, d, op);
  } else {
    SpliceOut(c, d, op);
  }
}

void RelayWorker::StartShutdown(Connection* c, Direction& d, Op op) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_shutdown(sqe, d.to, SHUT_WR);
  Submit(sqe, c, op);
}

void RelayWorker::OnRead(Connection* c, Direction& d, int res) {
  if (c->state == ConnState::kClosing) return;
  const bool up = IsUp(c, d);
  // A target that goes away before sending anything, right after a PROXY
  // header, most likely refused the header: worth its own counter.
  const bool proxy_refused = !up && c->sent_header && c->down.bytes == 0 && !c->up.eof;
  if (res < 0) {
    if (proxy_refused) {
      LogCause(kLogProxyClosed, "the target reset before answering (PROXY header refused?)", -res,
               c->target_address.text);
      BeginClose(c, CloseReason::kProxyTargetClosed, true, true);
      return;
    }
    // Resets travel on: the other side gets a reset too.
    BeginClose(c, up ? CloseReason::kClientReset : CloseReason::kTargetReset, true, true);
    return;
  }
  c->last_activity_ns = MonotonicNs();
  if (res == 0) {
    if (proxy_refused) {
      LogCause(kLogProxyClosed, "the target closed before answering (PROXY header refused?)", 0,
               c->target_address.text);
      c->reason = CloseReason::kProxyTargetClosed;
    }
    d.eof = true;
    StartShutdown(c, d, up ? kUpShutOp : kDownShutOp);
    return;
  }
  d.pending = static_cast<uint32_t>(res);
  d.offset = 0;
  d.bytes += static_cast<uint64_t>(res);
  Bump(up ? stats_.bytes_to_target : stats_.bytes_to_client, static_cast<uint64_t>(res));
  StartWrite(c, d, up ? kUpWriteOp : kDownWriteOp);
}

void RelayWorker::OnWrite(Connection* c, Direction& d, int res) {
  if (c->state == ConnState::kClosing) return;
  const bool up = IsUp(c, d);
  if (res <= 0) {
    // The receiving side is gone (EPIPE, ECONNRESET): both get a reset.
    BeginClose(c, up ? CloseReason::kTargetReset : CloseReason::kClientReset, true, true);
    return;
  }
  c->last_activity_ns = MonotonicNs();
  d.pending -= static_cast<uint32_t>(res);
  d.offset += static_cast<uint32_t>(res);
  if (d.pending > 0) {
    StartWrite(c, d, up ? kUpWriteOp : kDownWriteOp);
  } else {
    StartRead(c, d, up ? kUpReadOp : kDownReadOp);
  }
}

void RelayWorker::OnShutdown(Connection* c, Direction& d) {
  // An error (ENOTCONN: the peer is already gone) ends the direction as well.
  d.shut = true;
  if (c->state != ConnState::kClosing && c->up.shut && c->down.shut) {
    BeginClose(c, c->reason, false, false);
  }
}

void RelayWorker::BeginClose(Connection* c, CloseReason reason, bool reset_client,
                             bool reset_target) {
  if (c->state == ConnState::kClosing) return;
  c->state = ConnState::kClosing;
  c->reason = reason;
  c->reset_client = reset_client;
  c->reset_target = reset_target;
  if (c->inflight == 0) return;  // MaybeFree (after this completion) frees it
  for (int fd : {c->client.get(), c->target.get()}) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    Submit(sqe, c, kCancelOp);
  }
}

void RelayWorker::MaybeFree(Connection* c) {
  if (c->state != ConnState::kClosing || c->inflight != 0) return;
  if (c->reset_client) SetResetOnClose(c->client.get());
  if (c->reset_target) SetResetOnClose(c->target.get());
  stats_.Close(c->reason);
  for (Direction* d : {&c->up, &c->down}) {
    if (d->buffer) GiveBackBuffer(std::move(d->buffer));
  }
  if (c->prev != nullptr)
    c->prev->next = c->next;
  else
    connections_ = c->next;
  if (c->next != nullptr) c->next->prev = c->prev;
  // The sockets are closed by io_uring, in the next submission, without a
  // completion to handle; the pipes (splice mode) by the destructor.
  for (UniqueFd* fd : {&c->client, &c->target}) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_close(sqe, fd->Release());
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, PackUserData(kCloseOp, 0));
  }
  delete c;
  --open_;
  stats_.active.fetch_sub(1, std::memory_order_relaxed);
  if (source_waiting_) source_waiting_ = false;
  ArmSource();
}

// --- Timers and stopping --------------------------------------------------

void RelayWorker::ArmTick() {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_timeout(sqe, &tick_, 0, 0);
  Submit(sqe, nullptr, kTickOp);
}

void RelayWorker::OnTick() {
  const uint64_t now = MonotonicNs();
  const uint64_t connect_ns = options_.connect_timeout_s * kNsPerS;
  const uint64_t idle_ns = options_.idle_timeout_s * kNsPerS;
  const bool drain_over = source_closed_ && now >= drain_deadline_ns_;
  for (Connection* c = connections_; c != nullptr;) {
    Connection* next = c->next;  // BeginClose may free nothing now, but be safe
    if (c->state == ConnState::kConnecting && connect_ns != 0 &&
        now - c->started_ns >= connect_ns) {
      LogCause(kLogConnectTimeout, "connecting to the target timed out", 0, c->target_address.text);
      BeginClose(c, CloseReason::kConnectTimeout, true, false);
    } else if (c->state == ConnState::kRelaying && idle_ns != 0 &&
               now - c->last_activity_ns >= idle_ns) {
      BeginClose(c, CloseReason::kIdleTimeout, false, false);
    } else if (drain_over && c->state != ConnState::kClosing) {
      BeginClose(c, CloseReason::kDrained, true, true);
    }
    MaybeFree(c);
    c = next;
  }
  if (source_waiting_ && !source_closed_) {
    source_waiting_ = false;
    ArmSource();
  }
  if (!Done()) ArmTick();
}

void RelayWorker::ArmWake() {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_read(sqe, wake_fd_.get(), &wake_value_, sizeof(wake_value_), 0);
  Submit(sqe, nullptr, kWakeOp);
}

void RelayWorker::OnWake() {
  if (!stop_requested_.load() || source_closed_) {
    if (!source_closed_) ArmWake();
    return;
  }
  source_closed_ = true;
  drain_deadline_ns_ = MonotonicNs() + options_.drain_timeout_s * kNsPerS;
  if (source_inflight_) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_cancel64(sqe, PackUserData(kSourceOp, 0), 0);
    Submit(sqe, nullptr, kSourceCancelOp);
  }
}

}  // namespace sbx::relay
