#include "engine/core/unix_address.h"

#include <cstddef>
#include <cstring>

namespace sbx {

std::string_view UnixAddress::path() const {
  const size_t max = sizeof(addr.sun_path);
  return std::string_view(addr.sun_path, strnlen(addr.sun_path, max));
}

SysResult<UnixAddress> MakeUnixAddress(std::string_view path) {
  UnixAddress out;
  if (path.empty() || path.find('\0') != std::string_view::npos) {
    return SysResult<UnixAddress>::Error(EINVAL);
  }
  if (path.size() >= sizeof(out.addr.sun_path)) {
    return SysResult<UnixAddress>::Error(ENAMETOOLONG);
  }
  out.addr.sun_family = AF_UNIX;
  std::memcpy(out.addr.sun_path, path.data(), path.size());
  out.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return out;
}

}  // namespace sbx
