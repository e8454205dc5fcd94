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

#include "engine/core/fd_passing.h"
#include "engine/core/str_cat.h"
#include "engine/sys/clock.h"
#include "engine/sys/socket_ops.h"
#include "relay/log.h"
#include "relay/proxy_header.h"

namespace sbx::relay {
namespace {

constexpr unsigned kRingEntries = 1024;
constexpr unsigned kCqEntries = 32768;
constexpr long kTickNs = 250'000'000;
constexpr uint64_t kNsPerS = 1'000'000'000;

// Which causes were already logged (process-wide; the counters keep counts).
enum LogKind { kLogRefused, kLogUnreachable, kLogConnectTimeout, kLogNotConnected, kLogNat64,
               kLogNoResources, kLogProxyClosed, kLogSourceError, kLogNoFd, kLogKinds };
LogOnce<kLogKinds> log_once;

void LogCause(LogKind kind, const char* what, int err, const std::string& where) {
  if (!log_once.First(kind)) return;
  Log("%s%s%s (%s; further ones are only counted)", what, err ? ": " : "",
      err ? std::strerror(err) : "", where.c_str());
}

// A reset instead of a FIN: the peer learns that the other side failed.
void SetResetOnClose(int fd) {
  const linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

void LogConnection(const std::optional<SocketAddress>& peer,
                   const std::optional<SocketAddress>& local) {
  char when[32];
  const time_t now = ::time(nullptr);
  tm t{};
  ::gmtime_r(&now, &t);
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &t);
  Log("%s %s -> %s", when, peer ? FormatHostPort(*peer).c_str() : "[unix]",
      local ? FormatHostPort(*local).c_str() : "[unix]");
}

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
  if (ring_ready_) io_uring_queue_exit(&ring_);
}

void RelayWorker::RequestStop() {
  stop_requested_.store(true);
  const uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
}

absl::Status RelayWorker::SetUpRing() {
  if (!wake_fd_) return absl::ErrnoToStatus(errno, "eventfd");
  io_uring_params p{};
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  p.cq_entries = kCqEntries;
  int ret = io_uring_queue_init_params(kRingEntries, &ring_, &p);
  if (ret == -EINVAL) {  // kernels before 6.1: no DEFER_TASKRUN
    p = io_uring_params{};
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = kCqEntries;
    ret = io_uring_queue_init_params(kRingEntries, &ring_, &p);
  }
  if (ret < 0) return absl::ErrnoToStatus(-ret, StrCat("io_uring_queue_init (worker ", index_, ")"));
  ring_ready_ = true;
  return absl::OkStatus();
}

io_uring_sqe* RelayWorker::Sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {  // the submission queue is full: hand it to the kernel
    io_uring_submit(&ring_);
    Bump(stats_.uring_enters);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void RelayWorker::Submit(io_uring_sqe* sqe, Connection* c, Op op) {
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(c) | op);
  if (c != nullptr) ++c->inflight;
}

absl::Status RelayWorker::Run() {
  if (absl::Status s = SetUpRing(); !s.ok()) {
    finished_.store(true);
    return s;
  }
  ArmWake();
  ArmTick();
  ArmSource();
  while (!Done()) {
    io_uring_submit_and_wait(&ring_, 1);
    Bump(stats_.uring_enters);
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      Dispatch(cqe);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
  }
  io_uring_submit(&ring_);  // the closes of the last connections
  finished_.store(true);
  return absl::OkStatus();
}

bool RelayWorker::Done() const {
  return source_closed_ && !source_inflight_ && connections_ == nullptr;
}

void RelayWorker::Dispatch(const io_uring_cqe* cqe) {
  const uint64_t data = io_uring_cqe_get_data64(cqe);
  const int res = cqe->res;
  if (data < 16) {
    switch (data) {
      case kSourceOp: OnSource(res); break;
      case kTickOp: OnTick(); break;
      case kWakeOp: OnWake(); break;
      default: break;  // kSourceCancelOp, a failed kCloseOp: nothing to do
    }
    return;
  }
  auto* c = reinterpret_cast<Connection*>(data & ~uint64_t{15});
  --c->inflight;
  const bool splice = options_.copy == CopyMode::kSplice;
  switch (static_cast<Op>(data & 15)) {
    case kConnectOp: OnConnect(c, res); break;
    case kHeaderOp: OnHeader(c, res); break;
    case kUpReadOp: splice ? OnReady(c, c->up, kUpReadOp) : OnRead(c, c->up, res); break;
    case kUpWriteOp: splice ? OnReady(c, c->up, kUpWriteOp) : OnWrite(c, c->up, res); break;
    case kDownReadOp: splice ? OnReady(c, c->down, kDownReadOp) : OnRead(c, c->down, res); break;
    case kDownWriteOp:
      splice ? OnReady(c, c->down, kDownWriteOp) : OnWrite(c, c->down, res);
      break;
    case kUpShutOp: OnShutdown(c, c->up); break;
    case kDownShutOp: OnShutdown(c, c->down); break;
    default: break;  // kCancelOp
  }
  MaybeFree(c);
}

// --- Source ---------------------------------------------------------------

bool RelayWorker::SourcePaused() const {
  return source_waiting_ || (options_.max_connections != 0 && open_ >= options_.max_connections);
}

void RelayWorker::ArmSource() {
  if (source_inflight_ || source_closed_ || SourcePaused()) return;
  io_uring_sqe* sqe = Sqe();
  if (source_.receives_fds) {
    iov_ = {payload_, sizeof(payload_)};
    msg_ = msghdr{};
    msg_.msg_iov = &iov_;
    msg_.msg_iovlen = 1;
    msg_.msg_control = control_;
    msg_.msg_controllen = sizeof(control_);
    io_uring_prep_recvmsg(sqe, source_.fd, &msg_, MSG_CMSG_CLOEXEC);
  } else {
    peer_len_ = sizeof(peer_);
    io_uring_prep_accept(sqe, source_.fd, reinterpret_cast<sockaddr*>(&peer_), &peer_len_,
                         SOCK_CLOEXEC);
  }
  Submit(sqe, nullptr, kSourceOp);
  source_inflight_ = true;
}

void RelayWorker::OnSource(int res) {
  source_inflight_ = false;
  if (res == -ECANCELED && source_closed_) return;
  if (res < 0) {
    switch (-res) {
      case EINTR:
      case EAGAIN:
      case ECONNABORTED:
        break;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        // Out of fds or memory: wait for a connection to close (or the next
        // tick) instead of spinning on the error.
        Bump(stats_.source_pauses);
        source_waiting_ = true;
        break;
      default:
        Bump(stats_.source_errors);
        LogCause(kLogSourceError, source_.receives_fds ? "receive on the source socket failed"
                                                        : "accept failed",
                 -res, StrCat("fd ", source_.fd));
        source_waiting_ = true;  // retried at the next tick: never a busy loop
        break;
    }
    ArmSource();
    return;
  }
  if (!source_.receives_fds) {
    TakeConnection(UniqueFd(res), reinterpret_cast<const sockaddr*>(&peer_), peer_len_);
  } else {
    const int fd = TakeFirstFdCloseRest(&msg_);
    if (fd >= 0) {
      TakeConnection(UniqueFd(fd), nullptr, 0);
    } else if (res == 0 && source_.stream_channel) {
      Log("the sender on fd %d went away; draining and exiting", source_.fd);
      source_closed_ = true;
      drain_deadline_ns_ = MonotonicNs() + options_.drain_timeout_s * kNsPerS;
      return;
    } else {
      Bump(stats_.source_errors);
      LogCause(kLogNoFd, "a message on the source socket carried no fd", 0,
               StrCat("fd ", source_.fd));
    }
  }
  ArmSource();
}

// The client's and the local address, and whether the socket is connected.
// An accepted socket's peer came with the accept; a received one is asked.
bool RelayWorker::Addresses(int fd, const sockaddr* accepted_peer, socklen_t peer_len,
                            std::optional<SocketAddress>* peer,
                            std::optional<SocketAddress>* local) {
  if (accepted_peer != nullptr) {
    *peer = SocketAddress::FromSockaddr(accepted_peer, peer_len);
  } else {
    auto domain = GetIntOption(fd, SOL_SOCKET, SO_DOMAIN);
    if (!domain.ok()) return false;
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    // A listening or unconnected socket has no peer: ENOTCONN.
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
    if (*domain == AF_UNIX) return true;
    *peer = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  }
  if (!*peer) return false;
  // The local address serves the log line, NAT64 and PROXY headers only.
  if (options_.log_connections || options_.target.nat64 || options_.proxy != ProxyVersion::kNone) {
    auto l = LocalAddressOf(fd);
    if (l.ok()) *local = *l;
  }
  return true;
}

void RelayWorker::TakeConnection(UniqueFd fd, const sockaddr* accepted_peer, socklen_t peer_len) {
  Bump(stats_.accepted);
  if (source_.receives_fds) {
    // Passed sockets may be non-blocking; the relay's own fds never are.
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags >= 0 && (flags & O_NONBLOCK)) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    if (!FdPassesStrictLevel(fd.get(), StrictLevel::kStreamInetUnix)) {
      stats_.Close(CloseReason::kNotConnected);
      LogCause(kLogNotConnected, "a received fd is not a stream socket; closed it", 0,
               StrCat("from fd ", source_.fd));
      return;
    }
  }
  std::optional<SocketAddress> peer, local;
  if (!Addresses(fd.get(), accepted_peer, peer_len, &peer, &local)) {
    stats_.Close(CloseReason::kNotConnected);
    LogCause(kLogNotConnected, "a received socket is not connected; closed it", 0,
             StrCat("from fd ", source_.fd));
    return;
  }
  if (options_.log_connections) LogConnection(peer, local);
  auto target = ResolveTarget(options_.target, local ? &*local : nullptr);
  if (!target) {
    stats_.Close(CloseReason::kNat64Refused);
    LogCause(kLogNat64, "a connection's local address is outside the NAT64 prefix; closed it", 0,
             local ? FormatHostPort(*local) : "unix");
    return;
  }
  UniqueFd out(::socket(target->family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!out) {
    const int err = errno;
    stats_.Close(CloseReason::kNoResources);
    LogCause(kLogNoResources, "no socket for the target", err, target->text);
    SetResetOnClose(fd.get());
    if (err == EMFILE || err == ENFILE) {
      Bump(stats_.source_pauses);
      source_waiting_ = true;
    }
    return;
  }
  auto c = std::make_unique<Connection>();
  // Accepted sockets inherit TCP_NODELAY from the listener (set once at start).
  if (peer && source_.receives_fds) (void)SetIntOption(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
  if (target->family != AF_UNIX) (void)SetIntOption(out.get(), IPPROTO_TCP, TCP_NODELAY, 1);
  c->header = EncodeProxyHeader(options_.proxy, peer ? &*peer : nullptr, local ? &*local : nullptr);
  c->sent_header = !c->header.empty();
  c->client = std::move(fd);
  c->target = std::move(out);
  c->target_address = std::move(*target);
  c->up.from = c->down.to = c->client.get();
  c->up.to = c->down.from = c->target.get();
  for (Direction* d : {&c->up, &c->down}) {
    if (options_.copy == CopyMode::kBuffer) {
      d->buffer = TakeBuffer();
      continue;
    }
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
      const int err = errno;
      stats_.Close(CloseReason::kNoResources);
      LogCause(kLogNoResources, "no pipe for splice", err, c->target_address.text);
      SetResetOnClose(c->client.get());
      return;
    }
    d->pipe_read.Reset(p[0]);
    d->pipe_write.Reset(p[1]);
    ::fcntl(p[1], F_SETPIPE_SZ, static_cast<int>(options_.buffer_size));
  }
  c->started_ns = c->last_activity_ns = MonotonicNs();
  Connection* raw = c.release();
  raw->next = connections_;
  if (connections_ != nullptr) connections_->prev = raw;
  connections_ = raw;
  ++open_;
  Bump(stats_.active);
  StartConnect(raw);
}

// Buffers are reused: a fresh one would cost page faults on every connection.
std::unique_ptr<char[]> RelayWorker::TakeBuffer() {
  if (free_buffers_.empty()) return std::unique_ptr<char[]>(new char[options_.buffer_size]);
  std::unique_ptr<char[]> b = std::move(free_buffers_.back());
  free_buffers_.pop_back();
  return b;
}

void RelayWorker::GiveBackBuffer(std::unique_ptr<char[]> buffer) {
  if (free_buffers_.size() * options_.buffer_size < kMaxFreeBufferBytes) {
    free_buffers_.push_back(std::move(buffer));
  }
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
  if (c->prev != nullptr) c->prev->next = c->next; else connections_ = c->next;
  if (c->next != nullptr) c->next->prev = c->prev;
  // The sockets are closed by io_uring, in the next submission, without a
  // completion to handle; the pipes (splice mode) by the destructor.
  for (UniqueFd* fd : {&c->client, &c->target}) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_close(sqe, fd->Release());
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, kCloseOp);
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
    if (c->state == ConnState::kConnecting && connect_ns != 0 && now - c->started_ns >= connect_ns) {
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
    io_uring_prep_cancel64(sqe, kSourceOp, 0);
    Submit(sqe, nullptr, kSourceCancelOp);
  }
}

}  // namespace sbx::relay
