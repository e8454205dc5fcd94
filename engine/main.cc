// socketbox: the io_uring accept-and-dispatch daemon, and the route tester.
// Parses options and hands over; the work happens in daemon/ and tools/.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string_view>
#include <vector>

#include "engine/core/config_loader.h"
#include "engine/daemon/daemon.h"
#include "engine/daemon/fd_checks.h"
#include "engine/daemon/options.h"
#include "engine/kernel/steering_image.h"
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
    // What kernel dispatch cannot steer (docs/kernel-dispatch.md), as notes.
    for (const std::string& note : sbx::KernelDispatchNotes(*loaded->table, o.substitute)) {
      std::cerr << note << "\n";
    }
    std::cout << "OK\n";
    return 0;
  }
  return sbx::RunRouteTester(*loaded->table, std::cin, std::cout, o.substitute) == 0 ? 0 : 1;
}

// socketbox --upgrade PATH: a successor for the daemon serving PATH, with
// that daemon's command line and working directory (handover.h).
int Upgrade(const char* path) {
  auto requested = sbx::RequestHandover(path);
  if (!requested.ok() || !requested->has_value()) {
    std::fprintf(stderr, "socketbox: --upgrade %s: %s\n", path,
                 requested.ok() ? "no daemon serves this path"
                                : std::string(requested.status().message()).c_str());
    return 1;
  }
  sbx::HandoverReceived& taken = **requested;
  // The old daemon's fd environment: its jump-fd and -i targets at their
  // numbers, nothing else of the caller's (a postinst's pipes; handover.h).
  // First, before anything here opens an fd of its own (getpwnam...).
  if (absl::Status s = sbx::PlaceNamedFds(&taken); !s.ok()) {
    std::fprintf(stderr, "socketbox: --upgrade %s: %s\n", path, std::string(s.message()).c_str());
    return 1;
  }
  std::vector<char*> args;
  for (std::string& a : taken.argv) args.push_back(a.data());
  args.push_back(nullptr);
  if (::chdir(taken.cwd.c_str()) != 0) {
    std::fprintf(stderr, "socketbox: --upgrade %s: chdir %s: %s\n", path, taken.cwd.c_str(),
                 std::strerror(errno));
    return 1;
  }
  auto options = sbx::ParseOptions(static_cast<int>(taken.argv.size()), args.data());
  if (!options.ok() || options->mode != sbx::RunMode::kDaemon || options->handover_path != path) {
    std::fprintf(
        stderr,
        "socketbox: --upgrade %s: the running daemon's command line does not parse here%s%s\n",
        path, options.ok() ? "" : ": ",
        options.ok() ? "" : std::string(options.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "socketbox: upgrading pid %d (%s); this one logs where it does\n",
               static_cast<int>(taken.old_pid), path);
  options->daemonize = true;  // the caller (a package's postinst) goes on
  // Nothing of the caller's stays open in the detached daemon (a postinst's
  // pipes): its output goes where the old daemon's went.
  {
    sbx::UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (null) {
      ::dup2(null.get(), STDIN_FILENO);
      ::dup2(null.get(), STDOUT_FILENO);
    }
  }
  ::dup2(taken.log.get(), STDERR_FILENO);
  return sbx::RunDaemon(*options, std::move(*requested));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string_view(argv[1]) == "--upgrade") return Upgrade(argv[2]);
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
