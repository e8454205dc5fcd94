#include "engine/daemon/systemd.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "engine/core/numbers.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

namespace {
constexpr int kFirstListenFd = 3;  // SD_LISTEN_FDS_START
}  // namespace

std::vector<InheritedListener> TakeSystemdListeners() {
  std::vector<InheritedListener> out;
  const char* pid_text = std::getenv("LISTEN_PID");
  const char* fds_text = std::getenv("LISTEN_FDS");
  const char* names_text = std::getenv("LISTEN_FDNAMES");
  const std::string names = names_text != nullptr ? names_text : "";
  const auto pid = pid_text != nullptr ? ParseDecimal(pid_text, 1, INT32_MAX) : std::nullopt;
  const auto count = fds_text != nullptr ? ParseDecimal(fds_text, 1, 4096) : std::nullopt;
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (!pid || !count || static_cast<pid_t>(*pid) != ::getpid()) return out;
  size_t name_start = 0;
  for (int i = 0; i < static_cast<int>(*count); ++i) {
    const int fd = kFirstListenFd + i;
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    std::string name = "unknown";
    if (name_start <= names.size() && !names.empty()) {
      const size_t colon = names.find(':', name_start);
      name = names.substr(name_start,
                          colon == std::string::npos ? std::string::npos : colon - name_start);
      name_start = colon == std::string::npos ? names.size() + 1 : colon + 1;
    }
    out.push_back({fd, name});
  }
  return out;
}

void NotifySystemd(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if (len >= sizeof(addr.sun_path)) return;
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return;
  (void)::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
                 reinterpret_cast<sockaddr*>(&addr),
                 static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
}

}  // namespace sbx
