// socketbox-bind-exec: the launcher for programs that take an inherited "A"
// receiving socket (HAProxy's `bind sockpair@${VAR}`, Node's listen({fd})).
//
//   socketbox-bind-exec [-m OCTAL_MODE] PATH VAR PROG [ARGS...]
//
// Binds an AF_UNIX datagram socket at PATH (mode 0660 unless -m; bound under
// a temporary name and renamed into place, see receiver_socket.h), puts its
// fd number in the environment variable VAR, and execs PROG (PATH search).
// The socket stays behind when PROG exits; the next start replaces it.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/core/numbers.h"
#include "inetd/log.h"
#include "inetd/receiver_socket.h"

namespace sbx::inetd {
namespace {

int Usage(const char* problem) {
  Log("%s", problem);
  Log("usage: socketbox-bind-exec [-m OCTAL_MODE] PATH VAR PROG [ARGS...]");
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

int Main(int argc, char** argv) {
  SetLogName(argv[0]);
  mode_t mode = 0660;
  int i = 1;
  if (i < argc && std::strcmp(argv[i], "-m") == 0) {
    if (i + 1 >= argc || !ParseMode(argv[i + 1], &mode)) {
      return Usage("option -m needs an octal mode such as 0660");
    }
    i += 2;
  }
  if (i < argc && std::strcmp(argv[i], "--") == 0) ++i;
  if (argc - i < 3) return Usage("PATH, VAR and PROG are required");
  const char* path = argv[i];
  const char* variable = argv[i + 1];
  if (!ValidVariableName(variable))
    return Usage("VAR must be a variable name ([A-Za-z_][A-Za-z0-9_]*)");
  auto bound = BindReceiverSocket(path, mode);
  if (!bound.ok()) {
    Log("%s", std::string(bound.status().message()).c_str());
    return 1;
  }
  const int fd = bound->fd.Release();
  if (::fcntl(fd, F_SETFD, 0) != 0 || ::setenv(variable, std::to_string(fd).c_str(), 1) != 0) {
    Log("preparing fd %d: %s", fd, std::strerror(errno));
    return 1;
  }
  char** program = argv + i + 2;
  ::execvp(program[0], program);
  Log("exec %s: %s", program[0], std::strerror(errno));
  ::unlink(path);
  return 127;
}

}  // namespace
}  // namespace sbx::inetd

int main(int argc, char** argv) { return sbx::inetd::Main(argc, argv); }
