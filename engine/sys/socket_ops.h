// Thin wrappers over the socket calls the daemon makes outside io_uring,
// each returning its errno with the result.
#ifndef SBX_ENGINE_SYS_SOCKET_OPS_H_
#define SBX_ENGINE_SYS_SOCKET_OPS_H_

#include <string_view>

#include "engine/core/address.h"
#include "engine/sys/sys_result.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

SysResult<SocketAddress> LocalAddressOf(int fd);
SysResult<SocketAddress> PeerAddressOf(int fd);
SysStatus SetIntOption(int fd, int level, int name, int value);
SysResult<int> GetIntOption(int fd, int level, int name);
// An AF_UNIX datagram socket connected to `path`. Senders pass MSG_DONTWAIT
// on each send and wait for room with poll: on a connected Unix datagram
// socket POLLOUT means the peer's queue has room.
SysResult<UniqueFd> ConnectUnixDatagram(std::string_view path);

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_SOCKET_OPS_H_
