#include "engine/daemon/fd_checks.h"

#include <fcntl.h>

#include <algorithm>
#include <string>

#include "engine/core/diagnostic.h"
#include "engine/core/str_cat.h"
#include "engine/sys/fd_channel_check.h"

namespace sbx {

namespace {

// Why `fd` cannot carry connections; empty if it can.
std::string Problem(int fd, const std::vector<int>* inherited) {
  const bool open = ::fcntl(fd, F_GETFD) >= 0;
  if (open && inherited != nullptr &&
      !std::binary_search(inherited->begin(), inherited->end(), fd)) {
    return StrCat("fd ", fd,
                  " was not open when socketbox started (it is one socketbox opened "
                  "itself; only inherited fds can be named)");
  }
  return FdChannelProblem(fd);
}

}  // namespace

absl::Status CheckNamedFds(const RouteTable& table, std::string_view file_name,
                           const std::vector<int>* inherited) {
  std::vector<Diagnostic> errors;
  for (const RouteTable::NamedFd& named : table.named_fds()) {
    const std::string problem = Problem(named.fd, inherited);
    if (problem.empty()) continue;
    errors.push_back(
        {Diagnostic::Severity::kError, std::string(file_name), named.line,
         StrCat("jump-fd:", named.fd),
         StrCat(problem, "; jump-fd needs a connected Unix socket to send connections over")});
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(JoinDiagnostics(errors));
}

absl::Status CheckForcedFd(int fd, const std::vector<int>* inherited) {
  const std::string problem = Problem(fd, inherited);
  if (problem.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(StrCat(
      "-i ", fd, ": ", problem, "; -i needs a connected Unix socket to send connections over"));
}

}  // namespace sbx
