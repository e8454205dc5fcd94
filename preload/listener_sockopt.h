// getsockopt() on a receiving socket, answered as a listening TCP socket
// would answer: SO_TYPE SOCK_STREAM, SO_ACCEPTCONN 1, SO_DOMAIN the family
// the program bound (AF_INET6 for a handed socket), SO_PROTOCOL IPPROTO_TCP.
// Programs written for socket activation (sd_is_socket(), e.g.
// systemd-socket-proxyd) check these before they accept; the real answers
// (a datagram AF_UNIX socket) make them refuse the socket.
//
// Receiving sockets are those the preload bound (listener_table.h) and the
// AF_UNIX datagram sockets named by LISTEN_FDS (handed_sockets.h). Any
// other socket, or option, gets the real call. The preload's own checks
// call the real getsockopt, never this one (the library is linked with
// --wrap=getsockopt, see meson.build).
#ifndef SBX_PRELOAD_LISTENER_SOCKOPT_H_
#define SBX_PRELOAD_LISTENER_SOCKOPT_H_

#include <sys/socket.h>

namespace sbx::preload {

int GetSockOpt(int fd, int level, int name, void* value, socklen_t* len);

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_LISTENER_SOCKOPT_H_
