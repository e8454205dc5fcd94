// Where the daemon reads its configuration from, at start-up and on every
// SIGHUP. The file stays reachable after -d (which changes to /) and -x
// (chroot): its directory is held open (O_PATH) and the file re-opened
// relative to it. Main thread only.
//
// The first Load() is the start-up read: the file is opened as the original
// opens it, so a pipe (-f <(...), -f /dev/stdin) or a FIFO (which waits for
// a writer) is read as before. Every later Load() is a reload, made by the
// thread that takes the signals, which must never block: the file is opened
// with O_NONBLOCK (a FIFO then opens at once instead of waiting for a
// writer) and refused unless the opened fd (fstat, so nothing can be swapped
// in between a check and the open) is a regular file, and unless it has a
// rule-set 0 (an empty file, accepted at start-up as the original accepts
// it, is refused on reload).
#ifndef SBX_ENGINE_DAEMON_CONFIG_SOURCE_H_
#define SBX_ENGINE_DAEMON_CONFIG_SOURCE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/core/config_loader.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

class ConfigSource {
 public:
  // Opens the directory of `path` (before -d and chroot).
  absl::Status Open(const std::string& path);
  // Reads and parses the file; the file's fd is closed again on return.
  absl::StatusOr<LoadedConfig> Load() const;

 private:
  std::string path_, name_;
  UniqueFd dir_;
  mutable bool loaded_before_ = false;  // a Load() ran: the next ones are reloads
};

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_CONFIG_SOURCE_H_
