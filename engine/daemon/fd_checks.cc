#include "engine/daemon/fd_checks.h"

#include <fcntl.h>

#include <algorithm>
#include <string>

#include "engine/core/diagnostic.h"
#include "engine/core/str_cat.h"
#include "engine/sys/fd_channel_check.h"

namespace sbx {

absl::Status CheckNamedFds(const RouteTable& table, std::string_view file_name,
                           const std::vector<int>* inherited) {
  std::vector<Diagnostic> errors;
  for (const RouteTable::NamedFd& named : table.named_fds()) {
    std::string problem = FdChannelProblem(named.fd);
    const bool open = ::fcntl(named.fd, F_GETFD) >= 0;
    if (open && inherited != nullptr &&
        !std::binary_search(inherited->begin(), inherited->end(), named.fd)) {
      problem = StrCat("fd ", named.fd, " was not open when socketbox started (it is one socketbox "
                       "opened itself; only inherited fds can be named)");
    }
    if (problem.empty()) continue;
    errors.push_back({Diagnostic::Severity::kError, std::string(file_name), named.line,
                      StrCat("jump-fd:", named.fd),
                      StrCat(problem, "; jump-fd needs a connected Unix socket to send connections over")});
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(JoinDiagnostics(errors));
}

absl::Status CheckForcedFd(int fd) {
  const std::string problem = FdChannelProblem(fd);
  if (problem.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      StrCat("-i ", fd, ": ", problem, "; -i needs a connected Unix socket to send connections over"));
}

}  // namespace sbx
