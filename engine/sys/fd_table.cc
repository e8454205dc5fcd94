#include "engine/sys/fd_table.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sbx {

FdLimit RaiseFdLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return {};
  FdLimit result{limit.rlim_cur, limit.rlim_cur};
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) == 0) result.now = limit.rlim_max;
  }
  return result;
}

int FdTableTarget(unsigned long long limit) {
  constexpr unsigned long long kMost = 65536;
  return static_cast<int>(std::min(limit, kMost));
}

int GrowFdTable(int fds) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return errno;
  if (fds < 1 || static_cast<rlim_t>(fds) > limit.rlim_cur) return EINVAL;
  if (FdTableSize() >= fds) return 0;
  int source = ::eventfd(0, EFD_CLOEXEC);
  if (source < 0) return errno;
  int high = ::fcntl(source, F_DUPFD_CLOEXEC, fds - 1);
  int err = high < 0 ? errno : 0;
  if (high >= 0) ::close(high);
  ::close(source);
  return err;
}

int GrowFdTableForLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return errno;
  return GrowFdTable(FdTableTarget(limit.rlim_cur));
}

int FdTableSize() {
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (f == nullptr) return -1;
  char line[256];
  int size = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "FDSize:", 7) == 0) {
      size = std::atoi(line + 7);
      break;
    }
  }
  std::fclose(f);
  return size;
}

}  // namespace sbx
