// The "A" protocol (reference §4.1): one connected socket passed over a Unix
// socket as one message with one data byte (0x00) and one SCM_RIGHTS fd.
//
// Sending: FdMessage is the storage the kernel reads for one message. The
// io_uring engine keeps one per in-flight IORING_OP_SENDMSG (its address must
// stay stable until the completion); SendFd uses one on the stack with
// sendmsg(2). One layout, so both paths send the same bytes.
//
// Receiving: any payload length; the first fd of the first SCM_RIGHTS message
// is taken (ReceiveFds: the first few) and every other fd is closed (also
// when the control data was truncated, MSG_CTRUNC); the fd is checked at the
// strict level; a rejected fd is closed and the next message is read (if it
// brought no other good fd), as is one from a sender the
// SenderFilter refuses (sender_filter.h). On a stream or seqpacket
// channel, EOF / ECONNRESET / ENOTCONN mean the sender went away: ENOLINK
// (an empty seqpacket record from a sender still there is skipped).
//
// Free of abseil and exceptions: the preload library uses it too.
#ifndef SBX_ENGINE_CORE_FD_PASSING_H_
#define SBX_ENGINE_CORE_FD_PASSING_H_

#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

#include "engine/core/receiver_protocol.h"
#include "engine/core/sender_filter.h"
#include "engine/core/unix_address.h"
#include "engine/sys/sys_result.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

struct FdMessage {
  msghdr hdr{};
  iovec iov{};
  uint8_t byte = 0;
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int))]{};

  FdMessage() = default;
  FdMessage(const FdMessage&) = delete;  // hdr points into this object
  FdMessage& operator=(const FdMessage&) = delete;

  // Points hdr at this object's own fields, to carry `fd`. With `dest`, the
  // message is addressed to that path (unconnected datagram socket); `dest`
  // must outlive the send.
  void Prepare(int fd, const UnixAddress* dest = nullptr);
};

// Sends `fd` over `channel` (any connected Unix socket), or to `dest` when
// given. `flags` adds to MSG_NOSIGNAL (pass MSG_DONTWAIT for a non-blocking
// attempt on a blocking socket).
SysStatus SendFd(int channel, int fd, int flags = 0, const UnixAddress* dest = nullptr);

// SKBOX_STRICT_STREAM_MODE levels. Levels 1 and 2 take only connections:
// a listening or unconnected stream socket is rejected like a file.
enum class StrictLevel : int {
  kAny = 0,            // any fd
  kStream = 1,         // a connected SOCK_STREAM socket
  kStreamInetUnix = 2  // ... of AF_UNIX, AF_INET or AF_INET6 (the default)
};

struct ReceiveOptions {
  StrictLevel strict = StrictLevel::kStreamInetUnix;
  int recv_flags = 0;  // e.g. MSG_DONTWAIT
  // Counts fds rejected by `strict` (optional).
  uint64_t* rejected = nullptr;
  // Who may send (optional; the channel needs SO_PASSCRED, see
  // EnableSenderCredentials). Refused messages are counted in `refused`.
  const SenderFilter* senders = nullptr;
  uint64_t* refused = nullptr;
  // The receiver protocol (receiver_protocol.h): hello and acks to the
  // sender of each message (optional; datagram channels).
  SenderReplies* replies = nullptr;
  // Held around each use of `replies` when threads share it (the preload:
  // several threads accept() on one socket); optional. Never held while
  // blocked in recvmsg.
  pthread_mutex_t* replies_mutex = nullptr;
};

// The received fd always has FD_CLOEXEC set (MSG_CMSG_CLOEXEC); callers that
// want otherwise clear it. Errors: EAGAIN/EWOULDBLOCK (non-blocking, nothing
// queued), ENOLINK (stream peer gone), EINTR, others from recvmsg.
SysResult<UniqueFd> ReceiveFd(int channel, const ReceiveOptions& options = {});

// ReceiveFd for a receiver that declared max_fds > 1 (receiver_protocol.h):
// the fds of ONE message, in the order sent, into out[0..result). Of a
// message's fds the first `max` (1..kMaxFdsPerMessage; larger is taken as
// kMaxFdsPerMessage) are kept and the rest closed unread; each kept fd is
// then checked at the strict level on its own (a rejected one is closed and
// counted, the others move up), and the sender filter refuses a message as a
// whole. A message left with no fd is skipped, as by ReceiveFd, so the
// result is at least 1. ReceiveFd is ReceiveFds with max 1. Entries of `out`
// that receive an fd are overwritten (what they held is closed). Errors as
// ReceiveFd's, and EINVAL for max 0.
SysResult<size_t> ReceiveFds(int channel, UniqueFd* out, size_t max,
                             const ReceiveOptions& options = {});

// After a read of zero bytes and no fd on `channel`: true if the sender went
// away (always on a stream; on a seqpacket channel only once the peer has
// shut down, since an empty record is a message too).
bool SenderGoneAfterEmptyRead(int channel);

// The first fd of every SCM_RIGHTS message in a received `msg`; every other
// fd in it is closed. -1 if the message carries none. For callers that
// receive on their own (the engine's io_uring RECVMSG).
int TakeFirstFdCloseRest(msghdr* msg);

// The same for up to `max` fds: the first `max` fds of all SCM_RIGHTS
// headers in `msg`, in order, into out[0..result); every other one closed.
// `carried` (optional) gets how many the message carried in all.
size_t TakeFdsCloseRest(msghdr* msg, int* out, size_t max, size_t* carried = nullptr);

// True if `fd` passes `level` (levels 1-2: it has a peer, getpeername(2)).
bool FdPassesStrictLevel(int fd, StrictLevel level);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_FD_PASSING_H_
