// Process-wide state of the preload: the real libc functions it wraps, the
// settings, and its two kinds of messages. Everything is set up once, at
// load (or at the first intercepted call if another library's constructor
// runs first) and is read-only afterwards.
#ifndef SBX_PRELOAD_RUNTIME_H_
#define SBX_PRELOAD_RUNTIME_H_

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "preload/env_config.h"

namespace sbx::preload {

// The next definitions of the wrapped functions (libc's, or another
// preload's): calls made by the preload itself go through these, never
// through its own exported names.
struct RealCalls {
  int (*bind)(int, const sockaddr*, socklen_t);
  int (*connect)(int, const sockaddr*, socklen_t);
  int (*listen)(int, int);
  int (*accept)(int, sockaddr*, socklen_t*);
  int (*accept4)(int, sockaddr*, socklen_t*, int);
  int (*getsockname)(int, sockaddr*, socklen_t*);
  int (*getpeername)(int, sockaddr*, socklen_t*);
  int (*setsockopt)(int, int, int, const void*, socklen_t);
  int (*getsockopt)(int, int, int, void*, socklen_t*);
  int (*epoll_ctl)(int, int, int, epoll_event*);
  int (*poll)(pollfd*, nfds_t, int);
  int (*ppoll)(pollfd*, nfds_t, const timespec*, const sigset_t*);
};
const RealCalls& Real();

// Parsed on first use; malformed settings are reported then, once.
const Config& TheConfig();

// One line on stderr, "socketbox-preload[PID]: ...". Never allocates.
void Say(const char* format, ...) __attribute__((format(printf, 1, 2)));
// The same, only with SKBOX_DEBUG=1.
#define SBX_PRELOAD_DEBUG(...)                                               \
  do {                                                                       \
    if (::sbx::preload::TheConfig().debug) ::sbx::preload::Say(__VA_ARGS__); \
  } while (0)

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_RUNTIME_H_
