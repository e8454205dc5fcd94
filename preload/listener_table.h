// What the preload remembers about each socket it replaced by a Unix
// listener: the address the program bound (so getsockname answers with it,
// not with the Unix path) and the TCP options accepted sockets inherit.
//
// Keyed by fd and checked against the socket's inode: the preload does not
// see close(), so an entry whose fd now names another file is stale and is
// ignored (and reused). Fixed capacity, static storage, no allocation.
// Thread-safe (one mutex); fork-safe (pthread_atfork keeps the mutex
// consistent in the child, which inherits the fds and so the entries).
#ifndef SBX_PRELOAD_LISTENER_TABLE_H_
#define SBX_PRELOAD_LISTENER_TABLE_H_

#include <sys/socket.h>
#include <sys/types.h>

#include "preload/socket_options.h"

namespace sbx::preload {

struct ListenerInfo {
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
  sockaddr_storage bound{};
  socklen_t bound_len = 0;
  OptionSet options;
};

// Registers the pthread_atfork handlers (once, at load).
void InstallListenerTableForkHandlers();

// Remembers `fd` (now a Unix socket) as bound to `addr`. False when the
// table is full of live entries (getsockname then shows the Unix address).
bool RememberListener(int fd, const sockaddr* addr, socklen_t len, const OptionSet& options);

// Copies the live entry for `fd` into `*out`.
bool FindListener(int fd, ListenerInfo* out);

// Records a setsockopt on a remembered listener. Returns true when the call
// is answered (see OptionSet::Record); false when `fd` is not remembered or
// the option is for the Unix socket itself.
bool RecordListenerOption(int fd, int level, int name, const void* value, socklen_t len);

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_LISTENER_TABLE_H_
