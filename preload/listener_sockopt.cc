#include "preload/listener_sockopt.h"

#include <netinet/in.h>

#include <cerrno>
#include <cstring>

#include "preload/handed_sockets.h"
#include "preload/listener_table.h"
#include "preload/runtime.h"

namespace sbx::preload {
namespace {

bool IsAnswered(int level, int name) {
  return level == SOL_SOCKET &&
         (name == SO_TYPE || name == SO_ACCEPTCONN || name == SO_DOMAIN || name == SO_PROTOCOL);
}

// The family a listening TCP socket in its place would have; 0 when `fd`
// is not a receiving socket.
int ListeningFamily(int fd) {
  ListenerInfo info;
  if (FindListener(fd, &info)) {
    const int family = info.bound.ss_family;
    return family == AF_INET || family == AF_INET6 ? family : 0;
  }
  return IsHandedReceivingSocket(fd) ? AF_INET6 : 0;
}

}  // namespace

int GetSockOpt(int fd, int level, int name, void* value, socklen_t* len) {
  if (!IsAnswered(level, name)) return Real().getsockopt(fd, level, name, value, len);
  const int family = ListeningFamily(fd);
  if (family == 0) return Real().getsockopt(fd, level, name, value, len);
  if (value == nullptr || len == nullptr) {
    errno = EFAULT;
    return -1;
  }
  if (static_cast<int>(*len) < 0) {
    errno = EINVAL;
    return -1;
  }
  int answer = 0;
  switch (name) {
    case SO_TYPE:
      answer = SOCK_STREAM;
      break;
    case SO_ACCEPTCONN:
      answer = 1;
      break;
    case SO_DOMAIN:
      answer = family;
      break;
    case SO_PROTOCOL:
      answer = IPPROTO_TCP;
      break;
  }
  // As the kernel: at most sizeof(int) bytes, *len says how many.
  if (*len > sizeof(answer)) *len = sizeof(answer);
  std::memcpy(value, &answer, *len);
  SBX_PRELOAD_DEBUG("getsockopt fd %d option %d: answered as a listening TCP socket (%d)", fd, name,
                    answer);
  return 0;
}

}  // namespace sbx::preload

// The linker (--wrap=getsockopt) sends every getsockopt call made inside the
// library here: the real answers for its own checks (an empty datagram on a
// receiving socket must still read as SOCK_DGRAM in ReceiveFd).
extern "C" int __wrap_getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  return sbx::preload::Real().getsockopt(fd, level, name, value, len);
}
