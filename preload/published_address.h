// The address a program bound, published for the processes it hands its
// kernel listener to (docs/preload.md, "Kernel dispatch").
//
// A Node.js cluster primary (scheduling policy "none") binds, and the
// preload gives its fd the engine's TCP listener at once; the primary then
// hands the fd to its workers, separate programs whose preload knows nothing
// of it. Their getsockname() would show the listener's real address ([::]
// and the engine's port), and Node refuses a handle not bound to the port it
// asked for (EADDRINUSE). So the process that took the listener binds an
// abstract Unix socket whose name says which listener (its inode) and the
// address the program bound; the name lives exactly as long as some process
// holds that socket (no file to clean up), and the workers, in the same
// network namespace, find it in /proc/net/unix.
#ifndef SBX_PRELOAD_PUBLISHED_ADDRESS_H_
#define SBX_PRELOAD_PUBLISHED_ADDRESS_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>

namespace sbx::preload {

// The abstract name (without its leading NUL) for listener inode `ino` and
// address `addr` (`len` bytes, at most sizeof(sockaddr_in6)) into `out`
// (`size` bytes, NUL-terminated). False if it does not fit.
bool PublishedName(ino_t ino, const sockaddr* addr, socklen_t len, char* out, size_t size);

// Binds a close-on-exec abstract datagram socket under that name: its fd,
// or -1 (the name is taken, e.g. by another process that took the same
// listener; or no socket).
int PublishAddress(ino_t ino, const sockaddr* addr, socklen_t len);

// Looks for listener inode `ino` in `text` (/proc/net/unix's contents):
// the published address into `out` / `*len`. Pure, for the unit tests.
bool FindPublishedIn(const char* text, size_t text_len, ino_t ino, sockaddr_storage* out,
                     socklen_t* len);

// The same over /proc/net/unix (read in pieces; no allocation).
bool FindPublished(ino_t ino, sockaddr_storage* out, socklen_t* len);

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_PUBLISHED_ADDRESS_H_
