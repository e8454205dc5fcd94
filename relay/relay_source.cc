// The source side of a RelayWorker: one accept or recvmsg in flight on the
// shared source fd, each connection taken checked (a connected stream
// socket), addressed, logged and given its target socket and buffers, and the
// copy buffers reused across connections. The data path is relay_worker.cc.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>

#include "engine/core/address_ops.h"
#include "engine/core/fd_passing.h"
#include "engine/core/str_cat.h"
#include "engine/sys/clock.h"
#include "engine/sys/socket_ops.h"
#include "relay/diagnostics.h"
#include "relay/log.h"
#include "relay/proxy_header.h"
#include "relay/relay_worker.h"

namespace sbx::relay {

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
        LogCause(kLogSourceError,
                 source_.receives_fds ? "receive on the source socket failed" : "accept failed",
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
  if (!peer && options_.refuse_unix_clients) {
    // An AF_UNIX client has no address to announce: with a PROXY header the
    // target would take the relay's own address (v1 UNKNOWN, v2 LOCAL).
    stats_.Close(CloseReason::kUnixRefused);
    LogCause(kLogUnixRefused,
             "a connection from a Unix socket has no client address (--refuse-unix-clients); "
             "closed it",
             0, StrCat("from fd ", source_.fd));
    return;
  }
  if (options_.log_connections) LogConnection(options_.log_format, peer, local);
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
}  // namespace sbx::relay
