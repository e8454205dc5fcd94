#include "inetd/inetd_main.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/sys/stderr_log.h"
#include "inetd/inetd_server.h"
#include "inetd/spawner.h"

namespace sbx::inetd {

void EnsureStandardFds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    // open returns the lowest free number, which is `fd`.
    ::open("/dev/null", O_RDWR);
  }
}

int InetdMain(Mode mode, int argc, char** argv) {
  SetLogName(argv[0]);
  EnsureStandardFds();
  std::vector<std::string> args(argv + 1, argv + argc);
  auto options = ParseInetdOptions(
      mode, args, std::getenv("SKBOX_STRICT_STREAM_MODE"), std::getenv(kSenderUidsVariable),
      std::getenv(kAcknowledgeVariable), std::getenv(kTakeListenerVariable));
  if (!options.ok()) {
    Log("%s", std::string(options.status().message()).c_str());
    LogEachLine(InetdUsage(mode));
    return 1;
  }
  sigset_t signals;
  DaemonSignals(&signals);
  if (::sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
    Log("sigprocmask: %s", std::strerror(errno));
    return 1;
  }
  UniqueFd signal_fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd) {
    Log("signalfd: %s", std::strerror(errno));
    return 1;
  }
  InetdServer server(*options, std::move(signal_fd));
  if (!server.Start()) return 1;
  return server.Run();
}

}  // namespace sbx::inetd
