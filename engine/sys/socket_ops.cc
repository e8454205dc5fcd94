#include "engine/sys/socket_ops.h"

#include <sys/socket.h>

namespace sbx {

SysStatus SetIntOption(int fd, int level, int name, int value) {
  if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) return SysStatus::FromErrno();
  return Ok{};
}

SysResult<int> GetIntOption(int fd, int level, int name) {
  int value = 0;
  socklen_t len = sizeof(value);
  if (::getsockopt(fd, level, name, &value, &len) != 0) return SysResult<int>::FromErrno();
  return value;
}

}  // namespace sbx
