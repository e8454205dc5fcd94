// socketbox: the io_uring accept-and-dispatch daemon, and the route tester.
// Parses options and hands over; the work happens in daemon/ and tools/.
#include <fcntl.h>

#include <cstdio>
#include <iostream>

#include "engine/core/config_loader.h"
#include "engine/daemon/daemon.h"
#include "engine/daemon/fd_checks.h"
#include "engine/daemon/options.h"
#include "engine/sys/unique_fd.h"
#include "engine/tools/route_tester.h"

namespace {

int RunRouteTools(const sbx::Options& o) {
  absl::StatusOr<sbx::LoadedConfig> loaded;
  {
    // Closed before the fd check: the file's own fd must not pass for one
    // the configuration names.
    sbx::UniqueFd fd(::open(o.config_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      std::perror(o.config_path.c_str());
      return 1;
    }
    loaded = sbx::LoadConfigFd(fd.get(), o.config_path);
  }
  if (!loaded.ok()) {
    std::cerr << loaded.status().message() << "\n";
    return 1;
  }
  for (const auto& warning : loaded->warnings) std::cerr << warning.ToString() << "\n";
  if (o.mode == sbx::RunMode::kCheckConfig) {
    // The fds the file names are checked here as the daemon checks them:
    // in this process's own fd environment (what the caller passes it).
    absl::Status fds = sbx::CheckNamedFds(*loaded->table, o.config_path, nullptr);
    if (fds.ok() && o.forced_fd) fds = sbx::CheckForcedFd(*o.forced_fd, nullptr);
    if (!fds.ok()) {
      std::cerr << fds.message() << "\n";
      return 1;
    }
    std::cout << "OK\n";
    return 0;
  }
  return sbx::RunRouteTester(*loaded->table, std::cin, std::cout, o.substitute) == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  auto options = sbx::ParseOptions(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "socketbox: %s\n", std::string(options.status().message()).c_str());
    return 1;
  }
  for (const std::string& warning : options->warnings) {
    std::fprintf(stderr, "socketbox: warning: %s\n", warning.c_str());
  }
  switch (options->mode) {
    case sbx::RunMode::kHelp:
      std::fputs(sbx::UsageText().c_str(), stdout);
      return 0;
    case sbx::RunMode::kVersion:
      std::printf("socketbox (socketbox-uring) %s\n", SBX_VERSION);
      return 0;
    case sbx::RunMode::kCheckConfig:
    case sbx::RunMode::kTestRoute:
      return RunRouteTools(*options);
    case sbx::RunMode::kDaemon:
      break;
  }
  return sbx::RunDaemon(*options);
}
