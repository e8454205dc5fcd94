// The kernel identity (socket inode) of the socket a connected AF_UNIX
// socket is connected to, asked of sock_diag (NETLINK_SOCK_DIAG, the
// interface behind `ss -x`). Kernel dispatch compares it with a socket a
// receiver sent, to learn whether that socket is the one bound at a backend's
// path, whatever the path reads like in the receiver's mount namespace.
#ifndef SBX_ENGINE_SYS_UNIX_PEER_H_
#define SBX_ENGINE_SYS_UNIX_PEER_H_

#include <sys/types.h>

#include <cstdint>

#include "engine/sys/sys_result.h"

namespace sbx {

// The inode of `fd`'s socket (fstat).
SysResult<ino_t> SocketInode(int fd);

// The inode of the peer of the connected AF_UNIX socket `fd`; ENOTCONN when
// it has none.
SysResult<ino_t> UnixPeerInode(int fd);

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_UNIX_PEER_H_
