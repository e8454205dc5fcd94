#include "preload/handed_sockets.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "engine/core/numbers.h"

namespace sbx::preload {
namespace {

constexpr int kFirstFd = 3;  // SD_LISTEN_FDS_START
constexpr int kMaxHanded = 16;

struct Handed {
  int fd;
  dev_t dev;
  ino_t ino;
};

constinit Handed g_handed[kMaxHanded] = {};
constinit int g_count = 0;

const char* Lookup(const char* const* envp, const char* name) {
  const size_t len = std::strlen(name);
  for (const char* const* e = envp; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, name, len) == 0 && (*e)[len] == '=') return *e + len + 1;
  }
  return nullptr;
}

bool Identify(int fd, dev_t* dev, ino_t* ino) {
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return true;
}

}  // namespace

void RememberHandedSockets(const char* const* envp, int pid,
                           int (*real_getsockopt)(int, int, int, void*, socklen_t*)) {
  const char* listen_pid = Lookup(envp, "LISTEN_PID");
  const char* listen_fds = Lookup(envp, "LISTEN_FDS");
  if (listen_pid == nullptr || listen_fds == nullptr) return;
  const auto owner = ParseDecimal(listen_pid, 1, 0x7fffffff);
  const auto count = ParseDecimal(listen_fds, 1, 0x7fffffff - kFirstFd);
  if (!owner || !count || static_cast<int>(*owner) != pid) return;
  auto option = [&](int fd, int name) {
    int value = -1;
    socklen_t len = sizeof(value);
    return real_getsockopt(fd, SOL_SOCKET, name, &value, &len) == 0 ? value : -1;
  };
  // Look at no more fds than could be remembered, whatever LISTEN_FDS says.
  const int last = kFirstFd + static_cast<int>(std::min<uint64_t>(*count, kMaxHanded));
  for (int fd = kFirstFd; fd < last; ++fd) {
    if (option(fd, SO_DOMAIN) != AF_UNIX || option(fd, SO_TYPE) != SOCK_DGRAM) continue;
    Handed& h = g_handed[g_count];
    if (!Identify(fd, &h.dev, &h.ino)) continue;
    h.fd = fd;
    ++g_count;
  }
}

bool IsHandedReceivingSocket(int fd) {
  for (int i = 0; i < g_count; ++i) {
    if (g_handed[i].fd != fd) continue;
    dev_t dev;
    ino_t ino;
    return Identify(fd, &dev, &ino) && dev == g_handed[i].dev && ino == g_handed[i].ino;
  }
  return false;
}

}  // namespace sbx::preload
