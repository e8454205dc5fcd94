#include "engine/daemon/config_source.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>

#include "engine/core/str_cat.h"

namespace sbx {
namespace {

const char* KindOf(mode_t mode) {
  if (S_ISFIFO(mode)) return "a pipe (FIFO)";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

}  // namespace

absl::Status ConfigSource::Open(const std::string& path) {
  path_ = path;
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  name_ = slash == std::string::npos ? path : path.substr(slash + 1);
  dir_.Reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir_) return absl::ErrnoToStatus(errno, StrCat("open directory of ", path));
  return absl::OkStatus();
}

absl::StatusOr<LoadedConfig> ConfigSource::Load() const {
  const bool reload = loaded_before_;
  loaded_before_ = true;
  if (!reload) {
    UniqueFd fd(::openat(dir_.get(), name_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return absl::ErrnoToStatus(errno, StrCat("open ", path_));
    return LoadConfigFd(fd.get(), path_);
  }
  UniqueFd fd(::openat(dir_.get(), name_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) return absl::ErrnoToStatus(errno, StrCat("open ", path_));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return absl::ErrnoToStatus(errno, StrCat("fstat ", path_));
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        StrCat(path_, " is ", KindOf(st.st_mode),
               ", not a regular file: a reload reads only a regular file"));
  }
  absl::StatusOr<LoadedConfig> loaded = LoadConfigFd(fd.get(), path_);
  // The original accepts a file without rule-set 0 (an empty one) and then
  // drops every connection, and so does the start-up read here (the
  // drop-in contract). A reload is this daemon's own: one that would leave
  // nothing routed (a file emptied or truncated while being rewritten) is
  // refused, and the running configuration stays.
  if (loaded.ok() && loaded->table->rule_sets().empty()) {
    return absl::FailedPreconditionError(
        StrCat(path_, " has no rule-set 0 (is it empty?): every connection would be dropped"));
  }
  return loaded;
}

}  // namespace sbx
