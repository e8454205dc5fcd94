#include "preload/runtime.h"

#include <dlfcn.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "preload/handed_sockets.h"
#include "preload/listener_table.h"
#include "preload/replies_table.h"

extern char** environ;

namespace sbx::preload {
namespace {

// Used only if dlsym cannot find a next definition (a static libc, an odd
// link order): the system calls themselves.
int SysBind(int fd, const sockaddr* a, socklen_t l) {
  return static_cast<int>(::syscall(SYS_bind, fd, a, l));
}
int SysConnect(int fd, const sockaddr* a, socklen_t l) {
  return static_cast<int>(::syscall(SYS_connect, fd, a, l));
}
int SysListen(int fd, int backlog) { return static_cast<int>(::syscall(SYS_listen, fd, backlog)); }
int SysAccept(int fd, sockaddr* a, socklen_t* l) {
  return static_cast<int>(::syscall(SYS_accept4, fd, a, l, 0));
}
int SysAccept4(int fd, sockaddr* a, socklen_t* l, int flags) {
  return static_cast<int>(::syscall(SYS_accept4, fd, a, l, flags));
}
int SysGetsockname(int fd, sockaddr* a, socklen_t* l) {
  return static_cast<int>(::syscall(SYS_getsockname, fd, a, l));
}
int SysGetpeername(int fd, sockaddr* a, socklen_t* l) {
  return static_cast<int>(::syscall(SYS_getpeername, fd, a, l));
}
int SysSetsockopt(int fd, int level, int name, const void* v, socklen_t l) {
  return static_cast<int>(::syscall(SYS_setsockopt, fd, level, name, v, l));
}

int SysGetsockopt(int fd, int level, int name, void* v, socklen_t* l) {
  return static_cast<int>(::syscall(SYS_getsockopt, fd, level, name, v, l));
}

int SysEpollCtl(int epfd, int op, int fd, epoll_event* event) {
  return static_cast<int>(::syscall(SYS_epoll_ctl, epfd, op, fd, event));
}
int SysPpoll(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* mask) {
  // The kernel's ppoll may change the timeout it is given: a copy.
  timespec copy{};
  if (timeout != nullptr) copy = *timeout;
  return static_cast<int>(
      ::syscall(SYS_ppoll, fds, n, timeout != nullptr ? &copy : nullptr, mask, _NSIG / 8));
}
int SysPoll(pollfd* fds, nfds_t n, int timeout_ms) {
  if (timeout_ms < 0) return SysPpoll(fds, n, nullptr, nullptr);
  const timespec t{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
  return SysPpoll(fds, n, &t, nullptr);
}

template <typename F>
void Resolve(F** slot, const char* name, F* fallback) {
  void* p = ::dlsym(RTLD_NEXT, name);
  *slot = p != nullptr ? reinterpret_cast<F*>(p) : fallback;
}

RealCalls ResolveAll() {
  RealCalls r{};
  Resolve(&r.bind, "bind", &SysBind);
  Resolve(&r.connect, "connect", &SysConnect);
  Resolve(&r.listen, "listen", &SysListen);
  Resolve(&r.accept, "accept", &SysAccept);
  Resolve(&r.accept4, "accept4", &SysAccept4);
  Resolve(&r.getsockname, "getsockname", &SysGetsockname);
  Resolve(&r.getpeername, "getpeername", &SysGetpeername);
  Resolve(&r.setsockopt, "setsockopt", &SysSetsockopt);
  Resolve(&r.getsockopt, "getsockopt", &SysGetsockopt);
  Resolve(&r.epoll_ctl, "epoll_ctl", &SysEpollCtl);
  Resolve(&r.poll, "poll", &SysPoll);
  Resolve(&r.ppoll, "ppoll", &SysPpoll);
  return r;
}

// Marks, in the environment children inherit, which problems were already
// reported: a forking server's exec'd children (and their children) load
// the library again with the same values, and would otherwise each repeat
// the message. A changed value has another digest and is reported again.
constexpr char kReportedVariable[] = "SKBOX_PRELOAD_REPORTED";

void ReportOnce(const Problems& problems) {
  if (problems.count == 0) return;
  uint64_t digest = 14695981039346656037ull;  // FNV-1a over the messages
  for (int i = 0; i < problems.count; ++i) {
    for (const char* c = problems.lines[i]; *c != '\0'; ++c) {
      digest = (digest ^ static_cast<unsigned char>(*c)) * 1099511628211ull;
    }
  }
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(digest));
  const char* seen = ::getenv(kReportedVariable);
  if (seen != nullptr && std::strcmp(seen, text) == 0) return;
  for (int i = 0; i < problems.count; ++i) Say("%s", problems.lines[i]);
  // At load, before the program's threads exist; setenv copies the text.
  ::setenv(kReportedVariable, text, 1);
}

Config* LoadConfig() {
  static Config config;  // large: static storage, not the stack
  ParseConfig(environ, &config);
  ReportOnce(config.problems);
  return &config;
}

}  // namespace

const RealCalls& Real() {
  static const RealCalls calls = ResolveAll();
  return calls;
}

const Config& TheConfig() {
  static const Config* config = LoadConfig();
  return *config;
}

void Say(const char* format, ...) {
  const int saved_errno = errno;
  char line[512];
  int n = std::snprintf(line, sizeof(line), "socketbox-preload[%d]: ", static_cast<int>(getpid()));
  va_list args;
  va_start(args, format);
  const int m = std::vsnprintf(line + n, sizeof(line) - static_cast<size_t>(n) - 1, format, args);
  va_end(args);
  if (m > 0) n += std::min(m, static_cast<int>(sizeof(line)) - n - 2);
  line[n++] = '\n';
  // One write so lines from several threads or processes do not interleave.
  [[maybe_unused]] const ssize_t ignored = ::write(STDERR_FILENO, line, static_cast<size_t>(n));
  errno = saved_errno;
}

// The load-time set-up: resolve, read the settings (and report problems
// now rather than at the first bind), make the table fork-safe.
__attribute__((constructor)) static void SetUpAtLoad() {
  Real();
  TheConfig();
  InstallListenerTableForkHandlers();
  InstallRepliesTableForkHandlers();
  RememberHandedSockets(environ, static_cast<int>(getpid()), Real().getsockopt);
}

}  // namespace sbx::preload
