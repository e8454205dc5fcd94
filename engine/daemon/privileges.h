// Start-up steps 4 of the original, in its order: chroot (then chdir "/"),
// supplementary groups, gid, uid. Fixes its fault: a numeric -u without -g
// no longer keeps gid 0 and root's groups (Options resolves the gid).
#ifndef SBX_ENGINE_DAEMON_PRIVILEGES_H_
#define SBX_ENGINE_DAEMON_PRIVILEGES_H_

#include "absl/status/status.h"
#include "engine/daemon/options.h"

namespace sbx {

absl::Status ChrootAndDropPrivileges(const Options& options);

// PR_SET_NO_NEW_PRIVS, after which no exec can gain privileges.
absl::Status ForbidNewPrivileges();

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_PRIVILEGES_H_
