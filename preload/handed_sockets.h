// Receiving sockets the preload did not bind but was handed by systemd's
// socket-activation convention (LISTEN_PID = this process, LISTEN_FDS = N:
// fds 3 .. 3+N-1), e.g. by `socketbox-bind-exec -l`. Programs written for
// socket activation check such fds with getsockopt(SO_TYPE/SO_ACCEPTCONN)
// before accepting; the preload answers for these as for its own listeners.
//
// Read once at load (before main can unset the variables, as sd_listen_fds
// does); each fd is remembered with its inode, so an fd the program closed
// and reused for something else is no longer taken for one. Static storage,
// no allocation; read-only after load, so thread- and fork-safe.
#ifndef SBX_PRELOAD_HANDED_SOCKETS_H_
#define SBX_PRELOAD_HANDED_SOCKETS_H_

#include <sys/socket.h>

namespace sbx::preload {

// Remembers the AF_UNIX datagram sockets named by LISTEN_FDS in `envp`, if
// LISTEN_PID is `pid`. `real_getsockopt` checks what each fd is.
void RememberHandedSockets(const char* const* envp, int pid,
                           int (*real_getsockopt)(int, int, int, void*, socklen_t*));

// True when `fd` is still one of those sockets.
bool IsHandedReceivingSocket(int fd);

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_HANDED_SOCKETS_H_
