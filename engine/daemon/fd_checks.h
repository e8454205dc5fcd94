// The fds a configuration (jump-fd:N) or the command line (-i N) names are
// checked before the daemon uses them: at start-up (before any socket is
// bound), on every reload (a failure keeps the running table), and by
// --check-config in its own fd environment. Each must be an open Unix
// socket that can carry SCM_RIGHTS (see sys/fd_channel_check.h).
#ifndef SBX_ENGINE_DAEMON_FD_CHECKS_H_
#define SBX_ENGINE_DAEMON_FD_CHECKS_H_

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/core/route_table.h"

namespace sbx {

// InvalidArgument listing every unfit fd, one a line, in the parser's form:
// "FILE:LINE: error: near 'jump-fd:20': fd 20 is not open".
// `inherited` (sorted), when given, is the set of fds the daemon started
// with (sys/open_fds.h): an open fd outside it is one the daemon opened
// itself (a backend or accepted socket) and is refused as not inherited.
absl::Status CheckNamedFds(const RouteTable& table, std::string_view file_name,
                           const std::vector<int>* inherited);

// InvalidArgument "-i N: WHY" unless fd N can carry connections;
// `inherited` as above.
absl::Status CheckForcedFd(int fd, const std::vector<int>* inherited);

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_FD_CHECKS_H_
