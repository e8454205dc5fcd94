// A filesystem AF_UNIX address (sockaddr_un plus its length).
// Free of abseil and exceptions: the preload library uses it too.
#ifndef SBX_ENGINE_CORE_UNIX_ADDRESS_H_
#define SBX_ENGINE_CORE_UNIX_ADDRESS_H_

#include <sys/socket.h>
#include <sys/un.h>

#include <string_view>

#include "engine/sys/sys_result.h"

namespace sbx {

struct UnixAddress {
  sockaddr_un addr{};
  socklen_t len = 0;

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&addr); }
  std::string_view path() const;
};

// ENAMETOOLONG if `path` does not fit sun_path with its NUL, EINVAL if empty
// or holding a NUL byte.
SysResult<UnixAddress> MakeUnixAddress(std::string_view path);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_UNIX_ADDRESS_H_
