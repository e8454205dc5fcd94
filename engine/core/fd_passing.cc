#include "engine/core/fd_passing.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "engine/core/control_data.h"

namespace sbx {
namespace {

int GetIntSockopt(int fd, int option, int* value) {
  socklen_t len = sizeof(*value);
  return ::getsockopt(fd, SOL_SOCKET, option, value, &len);
}

}  // namespace

// After a zero-byte read: true if it was the end of a stream or seqpacket
// channel. On a stream it always is; a seqpacket channel also carries empty
// records (fuzz-found: one used to end the channel while its sender was
// still there), so there only a peer that has shut down ends it. (Records
// its departed sender queued after an empty one are then lost with it.)
bool SenderGoneAfterEmptyRead(int channel) {
  int type = 0;
  if (GetIntSockopt(channel, SO_TYPE, &type) != 0 || type == SOCK_DGRAM) return false;
  if (type == SOCK_STREAM) return true;
  pollfd p{channel, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP)) != 0;
}

size_t TakeFdsCloseRest(msghdr* msg, int* out, size_t max, size_t* carried) {
  size_t taken = 0;
  size_t seen = 0;
  for (cmsghdr* c = FirstCmsg(msg); c != nullptr; c = NextCmsg(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = CmsgPayloadBytes(msg, c) / sizeof(int);
    seen += count;
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (taken < max) {
        out[taken++] = fd;
      } else {
        ::close(fd);
      }
    }
  }
  if (carried != nullptr) *carried = seen;
  return taken;
}

int TakeFirstFdCloseRest(msghdr* msg) {
  int first = -1;
  TakeFdsCloseRest(msg, &first, 1);
  return first;
}

void FdMessage::Prepare(int fd, const UnixAddress* dest) {
  byte = 0;
  iov.iov_base = &byte;
  iov.iov_len = 1;
  std::memset(&hdr, 0, sizeof(hdr));
  std::memset(control, 0, sizeof(control));
  hdr.msg_iov = &iov;
  hdr.msg_iovlen = 1;
  hdr.msg_control = control;
  hdr.msg_controllen = sizeof(control);
  if (dest != nullptr) {
    hdr.msg_name = const_cast<sockaddr*>(dest->sockaddr_ptr());
    hdr.msg_namelen = dest->len;
  }
  cmsghdr* c = CMSG_FIRSTHDR(&hdr);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
}

SysStatus SendFd(int channel, int fd, int flags, const UnixAddress* dest) {
  FdMessage message;
  message.Prepare(fd, dest);
  while (::sendmsg(channel, &message.hdr, flags | MSG_NOSIGNAL) < 0) {
    if (errno != EINTR) return SysStatus::FromErrno();
  }
  return Ok{};
}

bool FdPassesStrictLevel(int fd, StrictLevel level) {
  if (level == StrictLevel::kAny) return true;
  int type = 0;
  if (GetIntSockopt(fd, SO_TYPE, &type) != 0 || type != SOCK_STREAM) return false;
  // A connection has a peer: a listening or never connected stream socket
  // has none (ENOTCONN), and a program handed one as a connection would
  // only fail later (EPIPE on its first write). The peer's family is the
  // socket's domain, so the same call answers level 2. (Inside the preload
  // this goes through its getpeername wrapper, which only zeroes `peer`.)
  sockaddr_storage peer{};
  socklen_t len = sizeof(peer);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return false;
  if (level == StrictLevel::kStream) return true;
  return peer.ss_family == AF_UNIX || peer.ss_family == AF_INET || peer.ss_family == AF_INET6;
}

SysResult<size_t> ReceiveFds(int channel, UniqueFd* out, size_t max,
                             const ReceiveOptions& options) {
  if (max == 0) return SysResult<size_t>::Error(EINVAL);
  if (max > kMaxFdsPerMessage) max = kMaxFdsPerMessage;
  while (true) {
    // Room for as many fds as any receiver may declare (receiver_protocol.h):
    // a sender that packs more into one message than the caller takes gets
    // the rest closed by us instead of left to MSG_CTRUNC.
    // The payload is ignored whatever its length (other senders use 2 or 4
    // bytes); a small buffer is enough, datagrams are truncated harmlessly.
    unsigned char payload[16];
    iovec iov{payload, sizeof(payload)};
    alignas(cmsghdr) unsigned char
        control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(kMaxFdsPerMessage * sizeof(int))];
    sockaddr_un from{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    if (options.replies != nullptr) {
      msg.msg_name = &from;
      msg.msg_namelen = sizeof(from);
    }
    const ssize_t n = ::recvmsg(channel, &msg, options.recv_flags | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      const int err = errno;
      if (err == ECONNRESET || err == ENOTCONN) return SysResult<size_t>::Error(ENOLINK);
      return SysResult<size_t>::Error(err);
    }
    int raw[kMaxFdsPerMessage]{};
    size_t carried = 0;
    // Never more than `out` holds, whatever TakeFdsCloseRest returns.
    const size_t count = std::min(TakeFdsCloseRest(&msg, raw, max, &carried), max);
    for (size_t i = 0; i < count; ++i) out[i].Reset(raw[i]);
    // Acknowledged as taken once read, whatever the checks below decide.
    if (options.replies != nullptr) {
      if (options.replies_mutex != nullptr) pthread_mutex_lock(options.replies_mutex);
      options.replies->OnMessage(channel, from, msg.msg_namelen, carried);
      if (options.replies_mutex != nullptr) pthread_mutex_unlock(options.replies_mutex);
    }
    if (count == 0) {
      // No fd: a message to ignore, unless it is the end of the channel.
      if (n == 0 && SenderGoneAfterEmptyRead(channel)) return SysResult<size_t>::Error(ENOLINK);
      continue;
    }
    uid_t sender;
    if (options.senders != nullptr && options.senders->active() &&
        !(SenderUidOf(&msg, &sender) && options.senders->Allows(sender))) {
      if (options.refused != nullptr) ++*options.refused;
      for (size_t i = 0; i < count; ++i) out[i].Reset();  // injected fds: closed unread
      continue;
    }
    // Each fd is checked on its own; the ones that pass close the gaps.
    size_t kept = 0;
    for (size_t i = 0; i < count; ++i) {
      if (!FdPassesStrictLevel(out[i].get(), options.strict)) {
        if (options.rejected != nullptr) ++*options.rejected;
        out[i].Reset();
      } else {
        if (kept != i) out[kept] = std::move(out[i]);
        ++kept;
      }
    }
    if (kept > 0) return kept;
    // Every fd was rejected (and closed): wait for the next message.
  }
}

SysResult<UniqueFd> ReceiveFd(int channel, const ReceiveOptions& options) {
  UniqueFd fd;
  auto got = ReceiveFds(channel, &fd, 1, options);
  if (!got.ok()) return SysResult<UniqueFd>::Error(got.error());
  return fd;
}

}  // namespace sbx
