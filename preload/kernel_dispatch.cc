#include "preload/kernel_dispatch.h"

#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "engine/core/listener_request.h"
#include "engine/core/printable.h"
#include "engine/core/sender_filter.h"
#include "engine/sys/unique_fd.h"
#include "preload/published_address.h"
#include "preload/replace.h"
#include "preload/runtime.h"
#include "preload/socket_identity.h"

namespace sbx::preload {
namespace {

// Every this many accept() calls on a kernel listener, the receiving socket
// is looked at first: under a steady stream of steered connections the
// kernel's queue is never empty, and what came over the datagram socket
// would otherwise wait.
constexpr uint32_t kReceivingFirstEvery = 16;

// poll() arrays up to this size are mirrored (on the stack); larger ones
// are passed through untouched.
constexpr nfds_t kMaxMirroredPoll = 256;
constexpr int kMaxMirroredListeners = 16;

constexpr int kAskAgainMs = 25;

// Socket paths in messages: shown whole, escaped (they come from settings).
constexpr size_t kPathShown = sizeof(sockaddr_un::sun_path);

constinit std::atomic<uint32_t> g_kernel_accepts{0};

// Listening sockets found not to be published (getsockname on a program's
// own [::]:P listener would otherwise read /proc/net/unix every time).
constexpr int kNotPublishedMemory = 16;
constinit std::atomic<ino_t> g_not_published[kNotPublishedMemory] = {};
constinit std::atomic<uint32_t> g_not_published_next{0};
constinit std::atomic<bool> g_reported{false};

// Why no listener came from the engine at `engine_path` (a setting,
// SKBOX_LISTENER_SOCKET: shown escaped), as one phrase.
void Reason(int err, const char* engine_path, char* out, size_t size) {
  const PrintableText shown(engine_path, kPathShown);
  const char* path = shown.text;
  switch (err) {
    case ENOENT:
    case ECONNREFUSED:
      std::snprintf(out, size, "no engine answers at %s", path);
      return;
    case ETIMEDOUT:
      std::snprintf(out, size, "no answer from the engine at %s within %d ms", path,
                    TheConfig().kernel_dispatch_timeout_ms);
      return;
    case EOPNOTSUPP:
      std::snprintf(out, size,
                    "the engine at %s does not steer this backend (its kernel dispatch is off, "
                    "or the backend cannot be steered)",
                    path);
      return;
    case EPERM:
      std::snprintf(out, size, "the engine at %s does not send to this socket", path);
      return;
    default:
      std::snprintf(out, size, "the engine at %s: %s", path, strerror(err));
      return;
  }
}

// Once per process: a server that listens on several sockets, or listens
// again, says it once. Only at listen(): binding is not serving.
void ReportNotTaken(int fd, const char* path, int err) {
  char why[256];
  Reason(err, TheConfig().listener_socket, why, sizeof why);
  // The path comes from the settings (SKBOX_DIRECTORY_ROOT...): escaped.
  SBX_PRELOAD_DEBUG("listen fd %d (%s): no kernel listener: %s", fd,
                    PrintableText(path, kPathShown).text, why);
  if (g_reported.exchange(true)) return;
  Say("listen fd %d (%s): kernel dispatch not used: %s; connections come over the datagram "
      "socket as before (SKBOX_KERNEL_DISPATCH=0: do not ask)",
      fd, PrintableText(path, kPathShown).text, why);
}

bool SetNonBlocking(int fd, bool nonblocking) {
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return false;
  const int want = nonblocking ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  return want == fl || ::fcntl(fd, F_SETFL, want) == 0;
}

int RealAccept(int fd, sockaddr* addr, socklen_t* len, int flags, bool is_accept4) {
  ProtectAddressBuffer(addr, len);
  return is_accept4 ? Real().accept4(fd, addr, len, flags) : Real().accept(fd, addr, len);
}

// A connection from the kernel's queue, with the options the program set
// on its listener.
int FromKernel(const ListenerInfo& kernel, sockaddr* addr, socklen_t* len, int flags,
               bool is_accept4) {
  const int conn = RealAccept(kernel.fd, addr, len, flags, is_accept4);
  if (conn >= 0 && !kernel.options.empty()) kernel.options.ApplyTo(conn);
  return conn;
}

bool IsAgain(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

// A blocking listener: wait for either queue (the real poll; the listener's
// queue may be taken by another thread or process between the poll and the
// accept, which then waits for the next steered connection, as a plain
// blocking accept would).
int AcceptBlocking(const ListenerInfo& kernel, sockaddr* addr, socklen_t* len, int flags,
                   bool is_accept4) {
  for (;;) {
    if (!ReceivingIsLive(kernel)) return FromKernel(kernel, addr, len, flags, is_accept4);
    const int passed = AcceptFromReceiving(kernel, addr, len, flags);
    if (passed >= 0 || !IsAgain(errno)) return passed;
    pollfd wait[2] = {{kernel.fd, POLLIN, 0}, {kernel.receiving.fd, POLLIN, 0}};
    if (Real().poll(wait, 2, -1) < 0) return -1;  // EINTR, as a blocking accept would say
    if (wait[0].revents != 0) return FromKernel(kernel, addr, len, flags, is_accept4);
  }
}

}  // namespace

void TakeKernelListener(int fd, When when) {
  const Config& config = TheConfig();
  if (!config.kernel_dispatch) return;
  // Only a socket bound at a path can be a backend's receiving socket.
  sockaddr_un local{};
  socklen_t local_len = sizeof local;
  if (Real().getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
      local.sun_family != AF_UNIX || local_len <= offsetof(sockaddr_un, sun_path) ||
      local.sun_path[0] == '\0') {
    return;
  }
  char path[sizeof local.sun_path + 1] = {};
  std::memcpy(path, local.sun_path, local_len - offsetof(sockaddr_un, sun_path));
  ListenerInfo mine;
  const bool ours = FindListener(fd, &mine);
  if (when == When::kListen && ours && mine.kernel_error != 0) {
    // Asked at bind a moment ago: the answer stands.
    ReportNotTaken(fd, path, mine.kernel_error);
    return;
  }
  if (!ours && config.senders.active() && EnableSenderCredentials(fd) != 0) return;

  auto taken = RequestListener(fd, config.listener_socket, path, config.kernel_dispatch_timeout_ms);
  // EAGAIN: the engine had to try every backend path for another request
  // just before (a path that reads differently in a container): it does that
  // at most once per 20 ms, so ask again, within the timeout.
  for (int waited = 0; !taken.ok() && taken.error() == EAGAIN &&
                       waited + kAskAgainMs <= config.kernel_dispatch_timeout_ms;
       waited += kAskAgainMs) {
    ::usleep(kAskAgainMs * 1000);
    taken = RequestListener(fd, config.listener_socket, path, config.kernel_dispatch_timeout_ms);
  }
  if (!taken.ok()) {
    if (when == When::kBind) {
      // Said at listen(), if the program listens: a socket bound and
      // closed (a probe) stays silent.
      NoteKernelError(fd, taken.error());
      SBX_PRELOAD_DEBUG("bind fd %d (%s): no kernel listener from %s: %s", fd,
                        PrintableText(path, kPathShown).text,
                        PrintableText(config.listener_socket, kPathShown).text,
                        strerror(taken.error()));
    } else {
      ReportNotTaken(fd, path, taken.error());
    }
    return;
  }
  const int fl = ::fcntl(fd, F_GETFL);
  const int fd_flags = ::fcntl(fd, F_GETFD);
  // O_NONBLOCK belongs to the listener's open file, shared with the engine
  // and with every receiver that took it: the program's choice is set there.
  if (fl < 0 || fd_flags < 0 || !SetNonBlocking(taken->listener.get(), (fl & O_NONBLOCK) != 0)) {
    return;
  }
  // The receiving socket and the channel go where the listener goes: kept
  // across exec only if the program keeps its fd across exec (nginx's
  // binary upgrade: the new master holds the channel, so the engine still
  // counts the listener attended, and the receiving socket stays bound).
  const bool cloexec = (fd_flags & FD_CLOEXEC) != 0;
  UniqueFd receiving(::fcntl(fd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, 3));
  if (!receiving || (!cloexec && ::fcntl(taken->channel.get(), F_SETFD, 0) != 0)) return;
  if (!InstallKernelListener(fd, taken->listener.get(), cloexec ? O_CLOEXEC : 0, receiving.get(),
                             taken->channel.get())) {
    // The table is full: keep the datagram socket (closing the channel tells
    // the engine the listener is not served here).
    Say("%s fd %d (%s): kernel dispatch not used: too many listeners to remember",
        when == When::kBind ? "bind" : "listen", fd, PrintableText(path, kPathShown).text);
    return;
  }
  const int receiving_fd = receiving.Release();
  const int channel_fd = taken->channel.Release();
  SBX_PRELOAD_DEBUG(
      "%s fd %d (%s): now the engine's TCP listener (kernel dispatch); the datagram socket "
      "is kept at fd %d, the channel at fd %d",
      when == When::kBind ? "bind" : "listen", fd, PrintableText(path, kPathShown).text,
      receiving_fd, channel_fd);
}

bool AdoptIfPublished(int fd) {
  if (!TheConfig().kernel_dispatch) return false;
  dev_t dev;
  ino_t ino;
  if (!IdentifySocket(fd, &dev, &ino)) return false;
  for (const auto& seen : g_not_published) {
    if (seen.load(std::memory_order_relaxed) == ino) return false;
  }
  int listening = 0;
  socklen_t len = sizeof listening;
  sockaddr_storage bound{};
  socklen_t bound_len = 0;
  if (Real().getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || listening != 1 ||
      !FindPublished(ino, &bound, &bound_len)) {
    g_not_published[g_not_published_next.fetch_add(1, std::memory_order_relaxed) %
                    kNotPublishedMemory]
        .store(ino, std::memory_order_relaxed);
    return false;
  }
  if (!AdoptKernelListener(fd, reinterpret_cast<const sockaddr*>(&bound), bound_len)) return false;
  SBX_PRELOAD_DEBUG("fd %d: the engine's TCP listener, handed over by the process that took it",
                    fd);
  return true;
}

bool IsKernelListener(int fd) {
  ListenerInfo kernel;
  return PeekKernelListener(fd, &kernel) && IsLive(kernel);
}

int AcceptOnKernelListener(const ListenerInfo& kernel, sockaddr* addr, socklen_t* len, int flags,
                           bool is_accept4) {
  const int fl = ::fcntl(kernel.fd, F_GETFL);
  if (fl < 0) return -1;  // EBADF: closed, as accept would say
  if ((fl & O_NONBLOCK) == 0) {
    if (!IsLive(kernel)) return kNotKernelListener;
    return AcceptBlocking(kernel, addr, len, flags, is_accept4);
  }
  // Non-blocking: the kernel's queue first (one system call when a steered
  // connection is there, the common case), then the receiving socket.
  const bool receiving_first =
      g_kernel_accepts.fetch_add(1, std::memory_order_relaxed) % kReceivingFirstEvery ==
      kReceivingFirstEvery - 1;
  if (receiving_first && IsLive(kernel) && ReceivingIsLive(kernel)) {
    const int passed = AcceptFromReceiving(kernel, addr, len, flags);
    if (passed >= 0) return passed;
  }
  const int conn = RealAccept(kernel.fd, addr, len, flags, is_accept4);
  if (conn >= 0) {
    if (!kernel.options.empty() && IsLive(kernel)) kernel.options.ApplyTo(conn);
    return conn;
  }
  const int err = errno;
  if (!IsLive(kernel)) {
    // The fd names another socket now: the caller's ordinary handling. A
    // kernel error other than EAGAIN on the listener itself is the answer.
    return kNotKernelListener;
  }
  if (!IsAgain(err) || !ReceivingIsLive(kernel)) {
    errno = err;
    return -1;
  }
  const int passed = AcceptFromReceiving(kernel, addr, len, flags);
  if (passed < 0 && errno != EINTR) errno = err;  // as if from the listener: EAGAIN
  return passed;
}

int EpollCtl(int epfd, int op, int fd, epoll_event* event) {
  const int rc = Real().epoll_ctl(epfd, op, fd, event);
  if (!KernelListenersExist()) return rc;
  const int saved = errno;
  ListenerInfo kernel;
  if (!PeekKernelListener(fd, &kernel) || (rc != 0 && op != EPOLL_CTL_DEL) || !IsLive(kernel) ||
      !ReceivingIsLive(kernel)) {
    errno = saved;
    return rc;
  }
  const int receiving = kernel.receiving.fd;
  switch (op) {
    case EPOLL_CTL_ADD:
    case EPOLL_CTL_MOD: {
      // The same events and data: an arrival on the receiving socket is
      // reported as the listener's, and the program calls accept on it.
      epoll_event copy = *event;
      if (Real().epoll_ctl(epfd, op, receiving, &copy) != 0) {
        const int other = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        copy = *event;
        if (Real().epoll_ctl(epfd, other, receiving, &copy) != 0) {
          SBX_PRELOAD_DEBUG(
              "epoll_ctl %d on listener fd %d: the receiving socket fd %d is not "
              "watched with it: %s",
              op, fd, receiving, strerror(errno));
        }
      }
      break;
    }
    case EPOLL_CTL_DEL: {
      epoll_event unused{};
      Real().epoll_ctl(epfd, EPOLL_CTL_DEL, receiving, &unused);
      break;
    }
    default:
      break;
  }
  errno = saved;
  return rc;
}

int PollMirrored(pollfd* fds, nfds_t nfds, bool ppoll, int timeout_ms, const timespec* timeout,
                 const sigset_t* sigmask) {
  auto real = [&](pollfd* f, nfds_t n) {
    return ppoll ? Real().ppoll(f, n, timeout, sigmask) : Real().poll(f, n, timeout_ms);
  };
  if (!KernelListenersExist() || fds == nullptr || nfds == 0 || nfds > kMaxMirroredPoll) {
    return real(fds, nfds);
  }
  pollfd local[kMaxMirroredPoll + kMaxMirroredListeners];
  nfds_t owner[kMaxMirroredListeners];
  int extra = 0;
  for (nfds_t i = 0; i < nfds && extra < kMaxMirroredListeners; ++i) {
    ListenerInfo kernel;
    if (fds[i].fd < 0 || (fds[i].events & (POLLIN | POLLRDNORM)) == 0 ||
        !PeekKernelListener(fds[i].fd, &kernel) || !IsLive(kernel) || !ReceivingIsLive(kernel)) {
      continue;
    }
    local[nfds + extra] = {kernel.receiving.fd, POLLIN, 0};
    owner[extra++] = i;
  }
  if (extra == 0) return real(fds, nfds);
  std::memcpy(local, fds, nfds * sizeof(pollfd));
  const int rc = real(local, nfds + static_cast<nfds_t>(extra));
  if (rc < 0) return rc;
  for (nfds_t i = 0; i < nfds; ++i) fds[i].revents = local[i].revents;  // zeros on a timeout too
  if (rc == 0) return 0;
  for (int j = 0; j < extra; ++j) {
    if ((local[nfds + j].revents & POLLIN) == 0) continue;
    pollfd& listener = fds[owner[j]];
    listener.revents =
        static_cast<short>(listener.revents | (listener.events & (POLLIN | POLLRDNORM)));
  }
  int ready = 0;
  for (nfds_t i = 0; i < nfds; ++i) ready += fds[i].revents != 0 ? 1 : 0;
  return ready;
}

}  // namespace sbx::preload

// The linker (--wrap=poll) sends the library's own poll calls (the listener
// request's wait, engine/core/listener_request.cc) here: to the real one.
extern "C" int __wrap_poll(pollfd* fds, nfds_t nfds, int timeout_ms) {
  return sbx::preload::Real().poll(fds, nfds, timeout_ms);
}
