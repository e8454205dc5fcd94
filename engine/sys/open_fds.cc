#include "engine/sys/open_fds.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>

namespace sbx {
namespace {

constexpr rlim_t kMaxProbed = 65536;

std::vector<int> ProbeEachFd() {
  rlimit limit{};
  rlim_t end = kMaxProbed;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < end) end = limit.rlim_cur;
  std::vector<int> fds;
  for (rlim_t fd = 0; fd < end; ++fd) {
    if (::fcntl(static_cast<int>(fd), F_GETFD) >= 0) fds.push_back(static_cast<int>(fd));
  }
  return fds;
}

}  // namespace

std::vector<int> OpenFds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return ProbeEachFd();
  const int own = ::dirfd(dir);  // the listing's own fd is not one of ours
  std::vector<int> fds;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    const int fd = std::atoi(entry->d_name);
    if (fd != own) fds.push_back(fd);
  }
  ::closedir(dir);
  std::sort(fds.begin(), fds.end());
  return fds;
}

}  // namespace sbx
