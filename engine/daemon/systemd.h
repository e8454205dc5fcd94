// systemd integration without libsystemd: socket activation (LISTEN_PID,
// LISTEN_FDS, LISTEN_FDNAMES) and readiness notification (NOTIFY_SOCKET, a
// datagram protocol).
#ifndef SBX_ENGINE_DAEMON_SYSTEMD_H_
#define SBX_ENGINE_DAEMON_SYSTEMD_H_

#include <string>
#include <string_view>
#include <vector>

namespace sbx {

struct InheritedListener {
  int fd;
  std::string name;  // from LISTEN_FDNAMES, or "unknown"
};

// The listening sockets systemd passed to this process (fds 3..3+N-1), with
// FD_CLOEXEC set; the variables are removed from the environment so that
// they do not leak into children. Empty when not socket-activated.
std::vector<InheritedListener> TakeSystemdListeners();

// Sends `state` ("READY=1", "STOPPING=1", "RELOADING=1", ...) to
// $NOTIFY_SOCKET if set; silently nothing otherwise.
void NotifySystemd(std::string_view state);

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_SYSTEMD_H_
