// socketbox: entry point. For now the route tester (--check-config,
// --test-route); the io_uring daemon is wired in by the engine.
#include <fcntl.h>
#include <getopt.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "engine/core/config_loader.h"
#include "engine/sys/unique_fd.h"
#include "engine/tools/route_tester.h"

namespace {

enum LongOnly { kCheckConfig = 1000, kTestRoute };

int Usage(FILE* out, int status) {
  std::fprintf(out,
               "usage: socketbox [-f FILE] [-U] --check-config\n"
               "       socketbox [-f FILE] [-U] --test-route < tuples\n");
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "/etc/socketbox.conf";
  bool substitute = false;
  int mode = 0;
  static const option kLongOptions[] = {
      {"check-config", no_argument, nullptr, kCheckConfig},
      {"test-route", no_argument, nullptr, kTestRoute},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  int opt;
  while ((opt = getopt_long(argc, argv, "+f:Uh", kLongOptions, nullptr)) != -1) {
    switch (opt) {
      case 'f': config_path = optarg; break;
      case 'U': substitute = true; break;
      case kCheckConfig:
      case kTestRoute: mode = opt; break;
      case 'h': return Usage(stdout, 0);
      default: return Usage(stderr, 1);
    }
  }
  if (mode == 0) return Usage(stderr, 1);

  sbx::UniqueFd fd(::open(config_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    std::perror(config_path.c_str());
    return 1;
  }
  auto loaded = sbx::LoadConfigFd(fd.get(), config_path);
  if (!loaded.ok()) {
    std::cerr << loaded.status().message() << "\n";
    return 1;
  }
  for (const auto& warning : loaded->warnings) std::cerr << warning.ToString() << "\n";
  if (mode == kCheckConfig) {
    std::cout << "OK\n";
    return 0;
  }
  return sbx::RunRouteTester(*loaded->table, std::cin, std::cout, substitute) == 0 ? 0 : 1;
}
