#include "engine/daemon/privileges.h"

#include <grp.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>

#include "engine/core/str_cat.h"

namespace sbx {

absl::Status ChrootAndDropPrivileges(const Options& o) {
  if (!o.chroot_dir.empty()) {
    if (::chroot(o.chroot_dir.c_str()) != 0) {
      return absl::ErrnoToStatus(errno, StrCat("chroot ", o.chroot_dir));
    }
    if (::chdir("/") != 0) return absl::ErrnoToStatus(errno, "chdir / after chroot");
  }
  // Groups: the -G list; else, when changing gid, none (unless -k keeps them).
  if (o.groups) {
    if (::setgroups(o.groups->size(), o.groups->data()) != 0) {
      return absl::ErrnoToStatus(errno, "setgroups (-G)");
    }
  } else if (o.gid && !o.keep_groups) {
    if (::setgroups(0, nullptr) != 0) return absl::ErrnoToStatus(errno, "setgroups (clear)");
  }
  if (o.gid && ::setgid(*o.gid) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("setgid ", *o.gid));
  }
  if (o.uid && ::setuid(*o.uid) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("setuid ", *o.uid, " (-u ", o.user_label, ")"));
  }
  return absl::OkStatus();
}

absl::Status ForbidNewPrivileges() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return absl::ErrnoToStatus(errno, "prctl(PR_SET_NO_NEW_PRIVS)");
  }
  return absl::OkStatus();
}

}  // namespace sbx
