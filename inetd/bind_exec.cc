// socketbox-bind-exec: the launcher for programs that take an inherited "A"
// receiving socket (HAProxy's `bind sockpair@${VAR}`, Node's listen({fd})).
//
//   socketbox-bind-exec [-m OCTAL_MODE] PATH VAR PROG [ARGS...]
//   socketbox-bind-exec -l [-n NAME] [-m OCTAL_MODE] PATH PROG [ARGS...]
//
// Binds an AF_UNIX datagram socket at PATH (mode 0660 unless -m; bound under
// a temporary name and renamed into place, see receiver_socket.h), puts its
// fd number in the environment variable VAR, and execs PROG (PATH search).
// The socket stays behind when PROG exits; the next start replaces it.
//
// -l hands the socket over as systemd's socket activation does, for programs
// written for it (sd_listen_fds): the socket on fd 3, LISTEN_FDS=1,
// LISTEN_PID=this pid (exec keeps it), LISTEN_FDNAMES=NAME (default
// "socketbox"). Run such a program under the preload, which makes the
// socket look like a listening TCP socket to getsockopt and accept.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "engine/core/numbers.h"
#include "engine/core/receiver_socket.h"
#include "engine/sys/stderr_log.h"

namespace sbx::inetd {
namespace {

int Usage(const char* problem) {
  Log("%s", problem);
  Log("usage: socketbox-bind-exec [-m OCTAL_MODE] PATH VAR PROG [ARGS...]");
  Log("       socketbox-bind-exec -l [-n NAME] [-m OCTAL_MODE] PATH PROG [ARGS...]");
  return 1;
}

bool ParseMode(const char* text, mode_t* mode) {
  if (*text == '\0' || std::strlen(text) > 4) return false;
  unsigned value = 0;
  for (const char* p = text; *p; ++p) {
    if (*p < '0' || *p > '7') return false;
    value = value * 8 + static_cast<unsigned>(*p - '0');
  }
  *mode = static_cast<mode_t>(value);
  return true;
}

bool ValidVariableName(const char* name) {
  if (*name == '\0' || (*name >= '0' && *name <= '9')) return false;
  for (const char* p = name; *p; ++p) {
    const bool ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '_';
    if (!ok) return false;
  }
  return true;
}

constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START

// systemd's names: up to 255 characters, no colon (the list separator).
bool ValidFdName(const char* name) {
  const size_t len = std::strlen(name);
  if (len == 0 || len > 255) return false;
  for (const char* p = name; *p; ++p) {
    if (*p == ':' || *p < 0x20 || *p == 0x7f) return false;
  }
  return true;
}

// Moves `fd` to fd 3 (inheritable) and sets the socket-activation variables.
bool HandOverAsListenFds(int fd, const char* name) {
  if (fd != kListenFdsStart) {
    if (::dup2(fd, kListenFdsStart) != kListenFdsStart) return false;  // dup2: no CLOEXEC
    ::close(fd);
  } else if (::fcntl(fd, F_SETFD, 0) != 0) {
    return false;
  }
  return ::setenv("LISTEN_FDS", "1", 1) == 0 &&
         ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1) == 0 &&
         ::setenv("LISTEN_FDNAMES", name, 1) == 0;
}

int Main(int argc, char** argv) {
  SetLogName(argv[0]);
  mode_t mode = 0660;
  bool listen_fds = false;
  const char* fd_name = "socketbox";
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; ++i) {
    const std::string_view opt = argv[i];
    if (opt == "--") {
      ++i;
      break;
    }
    if (opt == "-l") {
      listen_fds = true;
    } else if (opt == "-m") {
      if (i + 1 >= argc || !ParseMode(argv[i + 1], &mode)) {
        return Usage("option -m needs an octal mode such as 0660");
      }
      ++i;
    } else if (opt == "-n") {
      if (i + 1 >= argc || !ValidFdName(argv[i + 1])) {
        return Usage("option -n needs a name of 1 to 255 characters without ':'");
      }
      fd_name = argv[++i];
    } else {
      return Usage("unknown option");
    }
  }
  const int words = listen_fds ? 2 : 3;  // PATH [VAR] PROG
  if (argc - i < words) {
    return Usage(listen_fds ? "PATH and PROG are required" : "PATH, VAR and PROG are required");
  }
  const char* path = argv[i];
  const char* variable = listen_fds ? nullptr : argv[i + 1];
  if (variable != nullptr && !ValidVariableName(variable))
    return Usage("VAR must be a variable name ([A-Za-z_][A-Za-z0-9_]*)");
  auto bound = BindReceiverSocket(path, mode);
  if (!bound.ok()) {
    Log("%s", std::string(bound.status().message()).c_str());
    return 1;
  }
  const int fd = bound->fd.Release();
  const bool ready = listen_fds ? HandOverAsListenFds(fd, fd_name)
                                : ::fcntl(fd, F_SETFD, 0) == 0 &&
                                      ::setenv(variable, std::to_string(fd).c_str(), 1) == 0;
  if (!ready) {
    Log("preparing fd %d: %s", fd, std::strerror(errno));
    return 1;
  }
  char** program = argv + i + words - 1;
  ::execvp(program[0], program);
  Log("exec %s: %s", program[0], std::strerror(errno));
  ::unlink(path);
  return 127;
}

}  // namespace
}  // namespace sbx::inetd

int main(int argc, char** argv) { return sbx::inetd::Main(argc, argv); }
