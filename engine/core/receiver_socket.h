// The "A"-protocol receiving socket at a path: AF_UNIX SOCK_DGRAM, bound
// under a temporary name next to PATH, chmod'ed, then renamed onto PATH, so
// that senders never see a missing path or a socket with the wrong mode.
//
// Replacing what is already at PATH:
//   - nothing there, or a stale socket file (no process bound to it): fine;
//   - a socket some live process is bound to: refused (EADDRINUSE), so that a
//     second instance does not steal the first one's traffic;
//   - anything that is not a socket: refused (EEXIST), never clobbered.
// The fd is CLOEXEC; callers that hand it to a program clear that.
// Used by socketbox-inetd, socketbox-bind-exec and socketbox-relay -s.
#ifndef SBX_ENGINE_CORE_RECEIVER_SOCKET_H_
#define SBX_ENGINE_CORE_RECEIVER_SOCKET_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

struct BoundSocket {
  UniqueFd fd;
  std::string path;
  // Identity of the socket file, to remove it at exit only if still ours.
  dev_t dev = 0;
  ino_t ino = 0;
};

// `sender_credentials`: SO_PASSCRED is on before the path appears, so every
// message carries its sender's uid (for SKBOX_SENDER_UIDS).
absl::StatusOr<BoundSocket> BindReceiverSocket(const std::string& path, mode_t mode = 0660,
                                               bool sender_credentials = false);

// Unlinks the path if it still names the file bound by BindReceiverSocket
// (a newer instance may have replaced it).
void RemoveIfStillOurs(const BoundSocket& bound);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_RECEIVER_SOCKET_H_
