// What the preload remembers about each socket it replaced by a Unix
// listener: the address the program bound (so getsockname answers with it,
// not with the Unix path) and the TCP options accepted sockets inherit.
//
// With kernel dispatch, a receiving socket whose listen() obtained the
// engine's TCP listener is an entry too (`kernel`): the program's fd is now
// that listener, and the entry keeps the datagram receiving socket (moved to
// a private fd: connections the kernel cannot steer still come over it) and
// the channel that tells the engine the listener is served.
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

// An fd the preload opened for itself, with the socket it names: closed
// only if the fd still names it (the program may have closed it).
struct OwnedSocket {
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
};

struct ListenerInfo {
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
  sockaddr_storage bound{};
  socklen_t bound_len = 0;  // 0: not known (getsockname gets the real answer)
  OptionSet options;
  // Kernel dispatch: the errno of a request made at bind that got no
  // listener (0: none made), said at listen().
  int kernel_error = 0;
  // Kernel dispatch: `fd` is the engine's TCP listener, taken by this
  // process (or its parent before fork), or adopted (handed over by the
  // process that took it: no receiving socket nor channel here).
  bool kernel = false;
  OwnedSocket receiving;  // the datagram receiving socket (CLOEXEC)
  OwnedSocket channel;    // kept open while the listener is served (CLOEXEC)
  OwnedSocket published;  // the bound address for adopters (published_address.h)
};

// Registers the pthread_atfork handlers (once, at load).
void InstallListenerTableForkHandlers();

// Remembers `fd` (now a Unix socket) as bound to `addr`. False when the
// table is full of live entries (getsockname then shows the Unix address).
bool RememberListener(int fd, const sockaddr* addr, socklen_t len, const OptionSet& options);

// Copies the live entry for `fd` into `*out`.
bool FindListener(int fd, ListenerInfo* out);

// Puts TCP listener `listener` in place of receiving socket `fd` (dup3 with
// `dup3_flags`, under the table's lock so no lookup sees it half done) and
// makes fd's entry a kernel entry holding `receiving_fd` (the receiving
// socket, already moved there) and `channel_fd`; the entry keeps the bound
// address and options if fd had one (and publishes the address for
// processes the listener is handed to), else it gets none. On success the
// table owns `receiving_fd` and `channel_fd` (they are closed when the entry
// is found stale); on failure (the table is full of live entries, dup3
// failed) nothing changed and the caller still owns everything.
bool InstallKernelListener(int fd, int listener, int dup3_flags, int receiving_fd, int channel_fd);

// Makes TCP listener `fd` (handed to this process by one that took it) a
// kernel entry bound to `addr`, with no receiving socket nor channel.
bool AdoptKernelListener(int fd, const sockaddr* addr, socklen_t len);

// Notes on fd's (live) entry that a request for its listener failed with
// `error`.
void NoteKernelError(int fd, int error);

// True when at least one kernel entry exists (one atomic load: the fast
// path of the calls that only care about kernel entries).
bool KernelListenersExist();

// The kernel entry for fd NUMBER `fd`, without checking that fd still names
// the listener (no system call). Callers check with IsLive before acting on
// anything but fd itself.
bool PeekKernelListener(int fd, ListenerInfo* out);

// True when `info.fd` still names the socket the entry was made for (one
// fstat). A kernel entry found stale is dropped (its receiving socket and
// channel closed).
bool IsLive(const ListenerInfo& info);

// True when `info.receiving` still names the receiving socket.
bool ReceivingIsLive(const ListenerInfo& info);

// Records a setsockopt on a remembered listener. Returns true when the call
// is answered (see OptionSet::Record); false when `fd` is not remembered or
// the option is for the Unix socket itself.
bool RecordListenerOption(int fd, int level, int name, const void* value, socklen_t len);

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_LISTENER_TABLE_H_
