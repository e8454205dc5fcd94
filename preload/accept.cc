// accept()/accept4() on a socket-passing socket (reference §5.2).
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "engine/core/fd_passing.h"
#include "preload/kernel_dispatch.h"
#include "preload/listener_table.h"
#include "preload/replace.h"
#include "preload/replies_table.h"
#include "preload/runtime.h"

namespace sbx::preload {
namespace {

constexpr int kKnownFlags = SOCK_NONBLOCK | SOCK_CLOEXEC;

constinit std::atomic<uint32_t> g_accept_counter{0};

int SockoptInt(int fd, int name) {
  int value = -1;
  socklen_t len = sizeof(value);
  // The real call: the exported getsockopt answers for receiving sockets.
  if (Real().getsockopt(fd, SOL_SOCKET, name, &value, &len) != 0) return -1;
  return value;
}

// AF_UNIX datagram sockets always; connected (not listening) stream and
// seqpacket ones with SKBOX_ACCEPT_STREAM=1. The type, or -1 for others.
int PassingSocketType(int fd, const Config& config) {
  if (SockoptInt(fd, SO_DOMAIN) != AF_UNIX) return -1;
  const int type = SockoptInt(fd, SO_TYPE);
  if (type == SOCK_DGRAM) return type;
  if ((type == SOCK_STREAM || type == SOCK_SEQPACKET) && config.accept_stream &&
      SockoptInt(fd, SO_ACCEPTCONN) == 0) {
    return type;
  }
  return -1;
}

// O_NONBLOCK and FD_CLOEXEC exactly as the accept4 flags say.
bool SetFlags(int fd, int flags) {
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return false;
  const int want_fl = (flags & SOCK_NONBLOCK) ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  if (want_fl != fl && ::fcntl(fd, F_SETFL, want_fl) != 0) return false;
  // ReceiveFd already set FD_CLOEXEC (MSG_CMSG_CLOEXEC): clear it only if asked.
  return (flags & SOCK_CLOEXEC) != 0 || ::fcntl(fd, F_SETFD, 0) == 0;
}

void FillPeerAddress(int fd, sockaddr* addr, socklen_t* len, const Config& config) {
  if (addr == nullptr || len == nullptr) return;
  ProtectAddressBuffer(addr, len);
  if (config.stealth && SockoptInt(fd, SO_DOMAIN) == AF_UNIX) {
    // Programs that cannot cope with an AF_UNIX peer see [::1]:0 instead.
    sockaddr_in6 fake{};
    fake.sin6_family = AF_INET6;
    fake.sin6_addr = in6addr_loopback;
    std::memcpy(addr, &fake, sizeof(fake) < *len ? sizeof(fake) : *len);
    *len = sizeof(fake);
    return;
  }
  if (Real().getpeername(fd, addr, len) != 0) *len = 0;
}

// Where the options and the sender check of a passing socket come from.
struct PassingSource {
  const OptionSet* options = nullptr;  // carried to each accepted TCP socket
  bool credentials_set = false;        // SO_PASSCRED already on (the preload bound it)
  int recv_flags = 0;                  // MSG_DONTWAIT: never block
  int relay = -1;  // kernel dispatch's channel: answers across network namespaces
};

int AcceptPassed(int fd, int type, sockaddr* addr, socklen_t* len, int flags, const Config& config,
                 const PassingSource& source) {
  if ((flags & ~kKnownFlags) != 0) {
    errno = EINVAL;  // what the kernel says for unknown accept4 flags
    return -1;
  }
  if (config.sched_yield && g_accept_counter.fetch_add(1, std::memory_order_relaxed) % 7 == 0) {
    // Lets another process blocked on the same socket take the next one.
    sched_yield();
  }
  ReceiveOptions options;
  options.strict = config.strict;
  options.recv_flags = source.recv_flags;
  uint64_t refused = 0;
  if (config.senders.active()) {
    // Sockets bound by this library got SO_PASSCRED before their bind; an
    // inherited one gets it here, so messages queued before are refused.
    if (!source.credentials_set && EnableSenderCredentials(fd) != 0) return -1;
    options.senders = &config.senders;
    options.refused = &refused;
  }
  if (config.acknowledge && type == SOCK_DGRAM) {
    // Datagram sockets only: on a stream the reply would go into the
    // sender's byte stream.
    const SharedReplies shared = RepliesFor(fd, source.relay);
    options.replies = shared.replies;
    options.replies_mutex = shared.mutex;
  }
  auto received = ReceiveFd(fd, options);
  if (refused != 0) {
    SBX_PRELOAD_DEBUG("accept fd %d: refused %llu socket(s) from a sender not in %s", fd,
                      static_cast<unsigned long long>(refused), kSenderUidsVariable);
  }
  if (!received.ok()) {
    // ENOLINK: the stream source went away. The original sent SIGTERM to
    // the whole process group here; an error is the program's to handle.
    if (received.error() == ENOLINK) SBX_PRELOAD_DEBUG("accept fd %d: source gone", fd);
    errno = received.error();
    return -1;
  }
  UniqueFd conn = std::move(*received);
  if (!SetFlags(conn.get(), flags)) return -1;
  if (source.options != nullptr && !source.options->empty()) {
    // TCP options only for TCP sockets (the strict level already vouched
    // for SOCK_STREAM; at level 0 a failed setsockopt is harmless).
    const int domain = SockoptInt(conn.get(), SO_DOMAIN);
    if (domain == AF_INET || domain == AF_INET6) source.options->ApplyTo(conn.get());
  }
  FillPeerAddress(conn.get(), addr, len, config);
  return conn.Release();
}

}  // namespace

int AcceptOn(int fd, sockaddr* addr, socklen_t* len, int flags, bool is_accept4) {
  if (len != nullptr && static_cast<int>(*len) < 0) {
    errno = EINVAL;
    return -1;
  }
  const Config& config = TheConfig();
  if (KernelListenersExist()) {
    ListenerInfo kernel;
    if (PeekKernelListener(fd, &kernel)) {
      const int r = AcceptOnKernelListener(kernel, addr, len, flags, is_accept4);
      if (r != kNotKernelListener) return r;
    }
  }
  const int type = PassingSocketType(fd, config);
  if (type >= 0) {
    ListenerInfo listener;
    PassingSource source;
    source.credentials_set = FindListener(fd, &listener);
    if (source.credentials_set) source.options = &listener.options;
    return AcceptPassed(fd, type, addr, len, flags, config, source);
  }
  ProtectAddressBuffer(addr, len);
  return is_accept4 ? Real().accept4(fd, addr, len, flags) : Real().accept(fd, addr, len);
}

int AcceptFromReceiving(const ListenerInfo& kernel, sockaddr* addr, socklen_t* len, int flags) {
  PassingSource source;
  source.options = &kernel.options;
  source.credentials_set = true;  // set when the preload bound it, or when it took the listener
  source.recv_flags = MSG_DONTWAIT;
  source.relay = kernel.channel.fd;
  const int conn =
      AcceptPassed(kernel.receiving.fd, SOCK_DGRAM, addr, len, flags, TheConfig(), source);
  if (conn >= 0) {
    SBX_PRELOAD_DEBUG(
        "accept fd %d: fd %d from the receiving socket (fd %d), not the kernel's queue", kernel.fd,
        conn, kernel.receiving.fd);
  }
  return conn;
}

}  // namespace sbx::preload
