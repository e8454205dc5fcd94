// The socket calls that speak core's address types: a socket's local and
// peer address as a SocketAddress, and a datagram socket connected to a Unix
// path. They live in core, not sys: sys is the layer below core (the kernel
// seam: UniqueFd, SysResult, the probe, plain socket options) and includes
// nothing from it.
#ifndef SBX_ENGINE_CORE_ADDRESS_OPS_H_
#define SBX_ENGINE_CORE_ADDRESS_OPS_H_

#include <string_view>

#include "engine/core/address.h"
#include "engine/sys/sys_result.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

SysResult<SocketAddress> LocalAddressOf(int fd);
SysResult<SocketAddress> PeerAddressOf(int fd);
// An AF_UNIX datagram socket connected to `path`. Senders pass MSG_DONTWAIT
// on each send and wait for room with poll: on a connected Unix datagram
// socket POLLOUT means the peer's queue has room.
SysResult<UniqueFd> ConnectUnixDatagram(std::string_view path);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_ADDRESS_OPS_H_
