#include "engine/daemon/config_source.h"

#include <fcntl.h>

#include <cerrno>

#include "engine/core/str_cat.h"

namespace sbx {

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
  UniqueFd fd(::openat(dir_.get(), name_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return absl::ErrnoToStatus(errno, StrCat("open ", path_));
  return LoadConfigFd(fd.get(), path_);
}

}  // namespace sbx
