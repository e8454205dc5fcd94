// The operations behind the intercepted calls: redirecting a TCP socket to
// a Unix socket (bind, connect), and accepting a passed socket.
// Each returns like libc: the result, or -1 with errno set.
#ifndef SBX_PRELOAD_REPLACE_H_
#define SBX_PRELOAD_REPLACE_H_

#include <sys/socket.h>

#include "preload/address_plan.h"

namespace sbx::preload {

// True for SOCK_STREAM sockets of AF_INET / AF_INET6: the only ones whose
// addresses are redirected to Unix sockets.
bool IsInetStreamSocket(int fd);

// Replaces `fd` by a Unix socket bound at `target` (keeping fd's number,
// O_NONBLOCK and FD_CLOEXEC), carrying the TCP options already set, and
// remembers `addr` for getsockname.
int BindToUnix(int fd, const sockaddr* addr, socklen_t len, const UnixTarget& target);

// Replaces `fd` by a Unix stream connected to `target` (a stream target
// directly; a datagram target by sending it one end of a socketpair with the
// "A" protocol, connect level 2 and up).
int ConnectToUnix(int fd, const UnixTarget& target);

// listen(): on AF_UNIX datagram sockets, kernel dispatch (the engine's TCP
// listener put in place, kernel_dispatch.h) or nothing; a no-op on a kernel
// listener; the block-listen check on unbound TCP sockets; else the real
// call.
int ListenOn(int fd, int backlog);

// accept()/accept4(): receives a passed socket on AF_UNIX datagram sockets
// (and connected stream/seqpacket ones with SKBOX_ACCEPT_STREAM=1); else the
// real call. `is_accept4` picks the real function for the pass-through.
int AcceptOn(int fd, sockaddr* addr, socklen_t* len, int flags, bool is_accept4);

// getsockname(): the address the program bound, for replaced listeners.
int GetSockName(int fd, sockaddr* addr, socklen_t* len);
int GetPeerName(int fd, sockaddr* addr, socklen_t* len);

// Zeroes the caller's address buffer as SKBOX_GETPEERNAME_PROTECTION asks.
void ProtectAddressBuffer(sockaddr* addr, const socklen_t* len);

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_REPLACE_H_
