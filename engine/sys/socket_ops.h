// Thin wrappers over the socket calls the daemon makes outside io_uring,
// each returning its errno with the result. (Calls that speak core's
// address types are in core/address_ops.h: sys includes nothing from core.)
#ifndef SBX_ENGINE_SYS_SOCKET_OPS_H_
#define SBX_ENGINE_SYS_SOCKET_OPS_H_

#include "engine/sys/sys_result.h"

namespace sbx {

SysStatus SetIntOption(int fd, int level, int name, int value);
SysResult<int> GetIntOption(int fd, int level, int name);

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_SOCKET_OPS_H_
