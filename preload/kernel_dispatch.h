// Kernel dispatch, the preload's side (docs/preload.md, "Kernel dispatch").
//
// When the preload has bound a program's TCP socket to a backend's datagram
// path (bind()), and at listen() on any other receiving socket (an AF_UNIX
// datagram socket bound at a path: one the program bound, inherited or was
// handed), the preload asks the engine for the TCP listener its eBPF program
// steers that backend's connections into (engine/core/listener_request.h).
// If granted, the listener is dup3'd onto the program's fd at once: before
// listen() returns, so before the program registers the fd with epoll, and
// already at bind() because a Node.js cluster primary (scheduling policy
// "none") only binds and hands the fd to its workers, which must receive a
// TCP socket. The fd keeps the O_NONBLOCK and FD_CLOEXEC the program gave
// it; listen() on it is then a no-op and accept() the kernel's own.
//
// The receiving socket is kept at a private fd (close-on-exec if the
// program's fd is): connections the kernel cannot steer still come over it. accept() on the
// listener also takes them (without blocking, after the kernel's queue is empty, and first on every
// 16th call so they are not starved). So that a program asleep in epoll or poll on the listener
// wakes for them too, the receiving socket is watched wherever the listener is: epoll_ctl on the
// listener is repeated for the receiving socket with the same event data, and poll/ppoll on the
// listener also waits on the receiving socket and reports its readiness as
// the listener's. select() is not covered.
#ifndef SBX_PRELOAD_KERNEL_DISPATCH_H_
#define SBX_PRELOAD_KERNEL_DISPATCH_H_

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "preload/listener_table.h"

namespace sbx::preload {

// Asks for the listener of AF_UNIX datagram socket `fd` and puts it in
// place. Nothing changes when it is refused or nobody answers; that is said
// once per process on stderr at listen() (a refusal at bind is kept and
// said if the program listens: a bound socket closed unused stays silent).
enum class When { kBind, kListen };
void TakeKernelListener(int fd, When when);

// TCP socket `fd`, not known here, is listening and its address was
// published by the process that took it as its kernel listener
// (published_address.h): it becomes a kernel entry with that address.
bool AdoptIfPublished(int fd);

// True when `fd` is a live kernel entry (listen() on it is then a no-op:
// the listener is the engine's, and so is its backlog).
bool IsKernelListener(int fd);

// What AcceptOnKernelListener returns when `kernel` turned out stale (the
// program closed the listener and the fd number names something else): the
// caller handles fd as any other.
inline constexpr int kNotKernelListener = -2;

// accept()/accept4() on a kernel listener: the kernel's queue and the
// receiving socket, blocking only if the listener is blocking.
int AcceptOnKernelListener(const ListenerInfo& kernel, sockaddr* addr, socklen_t* len, int flags,
                           bool is_accept4);

// One passed connection from `kernel`'s receiving socket, never blocking
// (accept.cc; EAGAIN when none is queued).
int AcceptFromReceiving(const ListenerInfo& kernel, sockaddr* addr, socklen_t* len, int flags);

// epoll_ctl(): the real call, repeated for the receiving socket when `fd`
// is a kernel listener.
int EpollCtl(int epfd, int op, int fd, epoll_event* event);

// poll() (`ppoll` false: `timeout_ms`) and ppoll() (`timeout`, `sigmask`):
// the real call, also waiting on the receiving sockets of the kernel
// listeners among `fds`.
int PollMirrored(pollfd* fds, nfds_t nfds, bool ppoll, int timeout_ms, const timespec* timeout,
                 const sigset_t* sigmask);

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_KERNEL_DISPATCH_H_
