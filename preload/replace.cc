#include "preload/replace.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/core/fd_passing.h"
#include "engine/core/printable.h"
#include "engine/core/unix_address.h"
#include "engine/sys/unique_fd.h"
#include "preload/kernel_dispatch.h"
#include "preload/listener_table.h"
#include "preload/runtime.h"
#include "preload/unix_target.h"

namespace sbx::preload {
namespace {

int Fail(int err) {
  errno = err;
  return -1;
}

int SockoptInt(int fd, int name) {
  int value = -1;
  socklen_t len = sizeof(value);
  // The real call: the exported getsockopt answers for receiving sockets.
  if (Real().getsockopt(fd, SOL_SOCKET, name, &value, &len) != 0) return -1;
  return value;
}

// sun_path as a C string (a record may fill all 108 bytes without a NUL).
struct PathString {
  char text[sizeof(sockaddr_un::sun_path) + 1] = {};
  explicit PathString(const UnixAddress& a) { std::memcpy(text, a.addr.sun_path, a.path().size()); }
};

int BindUnlinkingStale(int fd, const UnixAddress& target) {
  if (Real().bind(fd, target.sockaddr_ptr(), target.len) == 0) return 0;
  if (errno != EADDRINUSE) return -1;
  // A socket file left by an earlier run: replace it (once).
  const PathString path(target);
  struct stat st;
  if (::lstat(path.text, &st) != 0 || !S_ISSOCK(st.st_mode)) return Fail(EADDRINUSE);
  ::unlink(path.text);
  return Real().bind(fd, target.sockaddr_ptr(), target.len);
}

// Puts `replacement` in place of `fd`, keeping fd's close-on-exec flag.
int Swap(UniqueFd replacement, int fd, int fd_flags) {
  if (::dup3(replacement.get(), fd, (fd_flags & FD_CLOEXEC) ? O_CLOEXEC : 0) != fd) return -1;
  return 0;
}

// An address like the engine's TCP listeners': [::]:P.
bool MaybeEngineListener(const sockaddr* addr, socklen_t room, socklen_t len) {
  if (room < sizeof(sockaddr_in6) || len != sizeof(sockaddr_in6) || addr->sa_family != AF_INET6) {
    return false;
  }
  const auto* a6 = reinterpret_cast<const sockaddr_in6*>(addr);
  return a6->sin6_port != 0 && IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr);
}

socklen_t NaturalLength(const sockaddr* addr) {
  return addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

}  // namespace

bool IsInetStreamSocket(int fd) {
  if (SockoptInt(fd, SO_TYPE) != SOCK_STREAM) return false;
  const int domain = SockoptInt(fd, SO_DOMAIN);
  return domain == AF_INET || domain == AF_INET6;
}

int BindToUnix(int fd, const sockaddr* addr, socklen_t len, const UnixTarget& target) {
  auto resolved = ResolveUnixTarget(target, TheConfig());
  if (!resolved.ok()) {
    SBX_PRELOAD_DEBUG("bind fd %d: no Unix path: %s", fd, strerror(resolved.error()));
    return Fail(resolved.error());
  }
  const UnixAddress& unix_addr = *resolved;
  const int fl = ::fcntl(fd, F_GETFL);
  const int fd_flags = ::fcntl(fd, F_GETFD);
  if (fl < 0 || fd_flags < 0) return -1;
  const OptionSet carried = OptionSet::CaptureChanged(fd, SockoptInt(fd, SO_DOMAIN));
  const int type = (target.stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC |
                   ((fl & O_NONBLOCK) ? SOCK_NONBLOCK : 0);
  UniqueFd replacement(::socket(AF_UNIX, type, 0));
  if (!replacement) return -1;
  // Before bind: every message that can arrive carries its sender's uid.
  if (TheConfig().senders.active() && EnableSenderCredentials(replacement.get()) != 0) return -1;
  if (BindUnlinkingStale(replacement.get(), unix_addr) != 0) {
    const int err = errno;
    SBX_PRELOAD_DEBUG("bind fd %d to %s: %s", fd,
                      PrintableText(PathString(unix_addr).text, sizeof(sockaddr_un::sun_path)).text,
                      strerror(err));
    return Fail(err);
  }
  // The socketbox daemon and the server usually run as different users
  // sharing a group (the original's behaviour).
  const PathString path(unix_addr);
  ::chmod(path.text, 0660);
  if (Swap(std::move(replacement), fd, fd_flags) != 0) return -1;
  RememberListener(fd, addr, NaturalLength(addr) <= len ? NaturalLength(addr) : len, carried);
  SBX_PRELOAD_DEBUG("bind fd %d: now %s Unix socket %s", fd, target.stream ? "stream" : "datagram",
                    PrintableText(path.text, sizeof(sockaddr_un::sun_path)).text);
  if (!target.stream) TakeKernelListener(fd, When::kBind);
  return 0;
}

int ConnectToUnix(int fd, const UnixTarget& target) {
  const Config& config = TheConfig();
  if (!target.stream && config.connect_level < 2) return Fail(EINVAL);
  auto resolved = ResolveUnixTarget(target, config);
  if (!resolved.ok()) return Fail(resolved.error());
  const int fl = ::fcntl(fd, F_GETFL);
  const int fd_flags = ::fcntl(fd, F_GETFD);
  if (fl < 0 || fd_flags < 0) return -1;
  const int nonblock = (fl & O_NONBLOCK) ? SOCK_NONBLOCK : 0;
  if (target.stream) {
    UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | nonblock, 0));
    if (!s) return -1;
    int rc = Real().connect(s.get(), resolved->sockaddr_ptr(), resolved->len);
    const int err = errno;
    if (rc != 0 && err != EINPROGRESS) return -1;
    if (Swap(std::move(s), fd, fd_flags) != 0) return -1;
    errno = err;
    return rc;
  }
  // A datagram ("A" protocol) target: hand it one end of a new stream pair,
  // as the socketbox daemon hands over an accepted connection.
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | nonblock, 0, pair) != 0) return -1;
  UniqueFd ours(pair[0]);
  UniqueFd theirs(pair[1]);
  UniqueFd sender(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sender) return -1;
  if (nonblock) {
    // The far end's blocking mode is the receiver's business: keep it blocking.
    ::fcntl(theirs.get(), F_SETFL, ::fcntl(theirs.get(), F_GETFL) & ~O_NONBLOCK);
  }
  const SysStatus sent = SendFd(sender.get(), theirs.get(), MSG_DONTWAIT, &*resolved);
  if (!sent.ok()) return Fail(sent.error());
  return Swap(std::move(ours), fd, fd_flags);
}

int ListenOn(int fd, int backlog) {
  const int domain = SockoptInt(fd, SO_DOMAIN);
  const int type = SockoptInt(fd, SO_TYPE);
  if (domain == AF_UNIX && type == SOCK_DGRAM) {
    TakeKernelListener(fd, When::kListen);
    return 0;
  }
  // Listening already; its backlog is the engine's to choose. A listener
  // handed over by the process that took it is known by now if the program
  // asked its address (Node.js does); else it is looked for here.
  if (KernelListenersExist() && IsKernelListener(fd)) return 0;
  if ((domain == AF_INET || domain == AF_INET6) && SockoptInt(fd, SO_ACCEPTCONN) == 1 &&
      AdoptIfPublished(fd)) {
    return 0;
  }
  if (TheConfig().block_listen && (domain == AF_INET || domain == AF_INET6)) {
    // A TCP socket never bound (its bind went elsewhere or failed) would be
    // auto-bound to a random port on every address: refuse instead.
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    if (Real().getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return -1;
    if (domain == AF_INET) {
      const auto* a4 = reinterpret_cast<const sockaddr_in*>(&local);
      if (a4->sin_port == 0 && a4->sin_addr.s_addr == htonl(INADDR_ANY)) return Fail(EINVAL);
    } else if (reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port == 0) {
      return Fail(EINVAL);
    }
  }
  return Real().listen(fd, backlog);
}

void ProtectAddressBuffer(sockaddr* addr, const socklen_t* len) {
  const int level = TheConfig().getpeername_protection;
  if (level == 0 || addr == nullptr || len == nullptr) return;
  const socklen_t l = *len;
  if (static_cast<int>(l) <= 0) return;
  if (level >= 2 || l == sizeof(sockaddr_in) || l == sizeof(sockaddr_in6)) std::memset(addr, 0, l);
}

int GetSockName(int fd, sockaddr* addr, socklen_t* len) {
  ProtectAddressBuffer(addr, len);
  ListenerInfo info;
  if (addr == nullptr || len == nullptr) return Real().getsockname(fd, addr, len);
  if (!FindListener(fd, &info)) {
    const socklen_t room = *len;
    const int rc = Real().getsockname(fd, addr, len);
    // [::]:P is what the engine's TCP listeners are bound to: one handed
    // over by a process that took it shows the address that process bound.
    if (rc != 0 || !MaybeEngineListener(addr, room, *len) || !AdoptIfPublished(fd) ||
        !FindListener(fd, &info)) {
      return rc;
    }
  }
  if (info.bound_len == 0) return Real().getsockname(fd, addr, len);
  std::memcpy(addr, &info.bound, info.bound_len < *len ? info.bound_len : *len);
  *len = info.bound_len;
  return 0;
}

int GetPeerName(int fd, sockaddr* addr, socklen_t* len) {
  ProtectAddressBuffer(addr, len);
  return Real().getpeername(fd, addr, len);
}

}  // namespace sbx::preload
