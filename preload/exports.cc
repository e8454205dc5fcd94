// The C ABI: the libc functions libsocketbox-preload.so interposes. Each
// decides in a few lines and hands over to replace.cc / accept.cc; anything
// the preload does not handle goes to the real function untouched.
#include <sys/socket.h>

#include <cerrno>

#include "preload/address_plan.h"
#include "preload/kernel_dispatch.h"
#include "preload/listener_sockopt.h"
#include "preload/listener_table.h"
#include "preload/replace.h"
#include "preload/runtime.h"

namespace sbx::preload {
namespace {

// A TCP bind to fe8f::X:... that is not redirected can never work (the
// kernel refuses a link-local address without a scope id): one line saying
// which setting would redirect it, whatever SKBOX_DEBUG says.
void ExplainUnredirected(int fd, const Plan& plan) {
  switch (plan.why) {
    case Plan::Why::kPortZero:
      Say("bind fd %d to an fe8f:: address with port 0: never redirected (bind a port); the "
          "kernel refuses this link-local address (EINVAL)",
          fd);
      return;
    case Plan::Why::kUnset:
      Say("bind fd %d to an fe8f:: address: not redirected because %s is not set; the kernel "
          "refuses this link-local address (EINVAL). Set %s",
          fd, plan.variable, plan.variable);
      return;
    case Plan::Why::kFiltered:
      Say("bind fd %d to an fe8f:: address: not redirected because its port does not pass %s "
          "(default 1024,1024: ports below 1024); the kernel refuses this link-local address "
          "(EINVAL). Set %s to let the port through",
          fd, plan.variable, plan.variable);
      return;
  }
}

int BindOrConnect(int fd, const sockaddr* addr, socklen_t len, Operation op) {
  const RealCalls& real = Real();
  auto pass = [&](const sockaddr* a, socklen_t l) {
    return op == Operation::kBind ? real.bind(fd, a, l) : real.connect(fd, a, l);
  };
  const Plan plan = PlanAddress(addr, len, op, TheConfig());
  switch (plan.kind) {
    case Plan::Kind::kPassThrough:
      return pass(addr, len);
    case Plan::Kind::kLinkLocal:
      return pass(reinterpret_cast<const sockaddr*>(&plan.link_local), sizeof(plan.link_local));
    case Plan::Kind::kUnredirected:
      if (IsInetStreamSocket(fd)) ExplainUnredirected(fd, plan);
      return pass(addr, len);
    case Plan::Kind::kFail:
    case Plan::Kind::kUnix:
      break;
  }
  if (!IsInetStreamSocket(fd)) return pass(addr, len);
  if (plan.kind == Plan::Kind::kFail) {
    SBX_PRELOAD_DEBUG("%s fd %d refused: a setting it needs is malformed",
                      op == Operation::kBind ? "bind" : "connect", fd);
    errno = plan.error;
    return -1;
  }
  return op == Operation::kBind ? BindToUnix(fd, addr, len, plan.target)
                                : ConnectToUnix(fd, plan.target);
}

}  // namespace
}  // namespace sbx::preload

using sbx::preload::Operation;

#define SBX_EXPORT extern "C" __attribute__((visibility("default")))

SBX_EXPORT int bind(int fd, const sockaddr* addr, socklen_t len) noexcept {
  return sbx::preload::BindOrConnect(fd, addr, len, Operation::kBind);
}

SBX_EXPORT int connect(int fd, const sockaddr* addr, socklen_t len) {
  if (sbx::preload::TheConfig().connect_level == 0) {
    return sbx::preload::Real().connect(fd, addr, len);
  }
  return sbx::preload::BindOrConnect(fd, addr, len, Operation::kConnect);
}

SBX_EXPORT int listen(int fd, int backlog) noexcept { return sbx::preload::ListenOn(fd, backlog); }

SBX_EXPORT int accept(int fd, sockaddr* addr, socklen_t* len) {
  return sbx::preload::AcceptOn(fd, addr, len, 0, false);
}

SBX_EXPORT int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  return sbx::preload::AcceptOn(fd, addr, len, flags, true);
}

SBX_EXPORT int getsockname(int fd, sockaddr* addr, socklen_t* len) noexcept {
  return sbx::preload::GetSockName(fd, addr, len);
}

SBX_EXPORT int getpeername(int fd, sockaddr* addr, socklen_t* len) noexcept {
  return sbx::preload::GetPeerName(fd, addr, len);
}

SBX_EXPORT int setsockopt(int fd, int level, int name, const void* value, socklen_t len) noexcept {
  if (sbx::preload::RecordListenerOption(fd, level, name, value, len)) {
    SBX_PRELOAD_DEBUG("setsockopt fd %d level %d option %d: kept for accepted sockets", fd, level,
                      name);
    return 0;
  }
  return sbx::preload::Real().setsockopt(fd, level, name, value, len);
}

SBX_EXPORT int getsockopt(int fd, int level, int name, void* value, socklen_t* len) noexcept {
  return sbx::preload::GetSockOpt(fd, level, name, value, len);
}

// Kernel dispatch: a program watching a kernel listener also wakes for the
// connections that come over its receiving socket (kernel_dispatch.h).
SBX_EXPORT int epoll_ctl(int epfd, int op, int fd, epoll_event* event) noexcept {
  return sbx::preload::EpollCtl(epfd, op, fd, event);
}

SBX_EXPORT int poll(pollfd* fds, nfds_t nfds, int timeout_ms) {
  return sbx::preload::PollMirrored(fds, nfds, false, timeout_ms, nullptr, nullptr);
}

SBX_EXPORT int ppoll(pollfd* fds, nfds_t nfds, const timespec* timeout, const sigset_t* sigmask) {
  return sbx::preload::PollMirrored(fds, nfds, true, -1, timeout, sigmask);
}
