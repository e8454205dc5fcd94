#include "preload/unix_target.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/sys/unique_fd.h"

namespace sbx::preload {
namespace {

using Result = SysResult<UnixAddress>;

// Appends `text` to out[*used] within `size` bytes (keeping room for a NUL).
bool Append(char* out, size_t size, size_t* used, const char* text, size_t len) {
  if (*used + len >= size) return false;
  std::memcpy(out + *used, text, len);
  *used += len;
  out[*used] = '\0';
  return true;
}

Result FromRecordFile(const UnixTarget& target, const Config& config) {
  char file[PATH_MAX];
  size_t used = 0;
  char name[] = "/skbox_dir_NNNNN";
  FormatFiveDigits(target.a, name + 11);
  const char* root = config.directory_root.path;
  if (!Append(file, sizeof(file), &used, root, std::strlen(root)) ||
      !Append(file, sizeof(file), &used, name, sizeof(name) - 1)) {
    return Result::Error(ENAMETOOLONG);
  }
  UniqueFd fd(::open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return Result::FromErrno();
  UnixAddress out;
  out.addr.sun_family = AF_UNIX;
  char* path = out.addr.sun_path;
  const size_t want = sizeof(out.addr.sun_path);
  const off_t offset = static_cast<off_t>(target.b) * static_cast<off_t>(kRecordSize);
  ssize_t got;
  do {
    got = ::pread(fd.get(), path, want, offset);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return Result::FromErrno();
  if (static_cast<size_t>(got) != want) return Result::Error(ERANGE);
  if (path[0] == '\0') return Result::Error(ENOENT);
  void* token = ::memmem(path, want, "_@SB_", 5);
  if (token != nullptr) FormatFiveDigits(target.port, static_cast<char*>(token));
  // A record may fill all 108 bytes without a NUL; the kernel accepts that.
  out.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + strnlen(path, want));
  return out;
}

Result FromDirectory2(const UnixTarget& target, const Config& config) {
  // "/GGGGG/HHHHH_PPPPP"
  char tail[] = "/GGGGG/HHHHH_PPPPP";
  FormatFiveDigits(target.a, tail + 1);
  if (target.x_prefix) tail[1] = 'X';
  FormatFiveDigits(target.b, tail + 7);
  FormatFiveDigits(target.port, tail + 13);
  char full[PATH_MAX];
  size_t used = 0;
  const char* root = config.directory_root2.path;
  if (!Append(full, sizeof(full), &used, root, std::strlen(root)) ||
      !Append(full, sizeof(full), &used, tail, sizeof(tail) - 1)) {
    return Result::Error(ENAMETOOLONG);
  }
  return MakeUnixAddress(std::string_view(full, used));
}

}  // namespace

void FormatFiveDigits(uint16_t value, char* out) {
  for (int i = 4; i >= 0; --i) {
    out[i] = static_cast<char>('0' + value % 10);
    value = static_cast<uint16_t>(value / 10);
  }
}

SysResult<UnixAddress> ResolveUnixTarget(const UnixTarget& target, const Config& config) {
  if (target.source == UnixTarget::Source::kRecordFile) return FromRecordFile(target, config);
  return FromDirectory2(target, config);
}

}  // namespace sbx::preload
