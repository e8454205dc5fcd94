// Whether an fd named by the operator (jump-fd:N in the configuration, -i N
// on the command line) can carry connections to a receiver: the engine
// sends each connection over it with sendmsg(2) and SCM_RIGHTS, without a
// destination address. An fd that is not open would later be the number of
// some socket the daemon opens itself (an accepted TCP connection, say), and
// connections would be written into it; so it is checked before use.
#ifndef SBX_ENGINE_SYS_FD_CHANNEL_CHECK_H_
#define SBX_ENGINE_SYS_FD_CHANNEL_CHECK_H_

#include <string>

namespace sbx {

// Empty when `fd` is open, an AF_UNIX socket of a type that carries
// SCM_RIGHTS (SOCK_DGRAM, SOCK_STREAM, SOCK_SEQPACKET), and connected (a
// send names no address, and a listening socket cannot send). Otherwise why
// not, as a phrase about the fd: "fd 20 is not open", "fd 1 is a pipe, not a
// socket", "fd 7 is an AF_INET6 socket, not a Unix socket", ...
std::string FdChannelProblem(int fd);

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_FD_CHANNEL_CHECK_H_
