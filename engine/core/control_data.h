// Walking received control data (cmsg) without trusting its lengths.
//
// CMSG_FIRSTHDR does not check the first header's cmsg_len, a cmsg_len
// below CMSG_LEN(0) makes "cmsg_len - CMSG_LEN(0)" wrap around, and glibc's
// CMSG_NXTHDR adds an unchecked cmsg_len to a pointer. Control data the
// kernel writes is consistent, but a parser that trusts it reads out of
// bounds on anything else (tests/fuzz/control_data_fuzzer.cc found both
// readers doing so). Every reader of received control data walks it with
// these.
//
// Free of abseil and exceptions: the preload library uses it too.
#ifndef SBX_ENGINE_CORE_CONTROL_DATA_H_
#define SBX_ENGINE_CORE_CONTROL_DATA_H_

#include <sys/socket.h>

#include <cstddef>

namespace sbx {

// Bytes of `msg`'s control buffer from `c` to its end (0 if `c` is outside).
inline size_t CmsgRoom(const msghdr* msg, const cmsghdr* c) {
  const auto* start = static_cast<const unsigned char*>(msg->msg_control);
  const auto* header = reinterpret_cast<const unsigned char*>(c);
  if (start == nullptr || header < start) return 0;
  const auto offset = static_cast<size_t>(header - start);
  return offset < msg->msg_controllen ? msg->msg_controllen - offset : 0;
}

// The first header, or nullptr if the buffer cannot hold one.
inline cmsghdr* FirstCmsg(msghdr* msg) {
  if (msg->msg_control == nullptr || msg->msg_controllen < sizeof(cmsghdr)) return nullptr;
  return static_cast<cmsghdr*>(msg->msg_control);
}

// The bytes of `c`'s data inside both its cmsg_len and the control buffer;
// 0 for a header whose cmsg_len is shorter than a header.
inline size_t CmsgPayloadBytes(const msghdr* msg, const cmsghdr* c) {
  const size_t room = CmsgRoom(msg, c);
  if (room < CMSG_LEN(0) || c->cmsg_len < CMSG_LEN(0)) return 0;
  const size_t len = c->cmsg_len < room ? c->cmsg_len : room;
  return len - CMSG_LEN(0);
}

// The header after `c`, or nullptr at the end or when `c`'s cmsg_len is
// impossible (shorter than a header, or past the buffer's end).
inline cmsghdr* NextCmsg(msghdr* msg, cmsghdr* c) {
  const size_t room = CmsgRoom(msg, c);
  if (c->cmsg_len < CMSG_LEN(0) || c->cmsg_len > room) return nullptr;
  const size_t step = CMSG_ALIGN(c->cmsg_len);
  if (step >= room || room - step < sizeof(cmsghdr)) return nullptr;
  return reinterpret_cast<cmsghdr*>(reinterpret_cast<unsigned char*>(c) + step);
}

// Calls take(fd) for every fd of every SCM_RIGHTS header of `msg`, in
// order: the caller owns each one (and must close those it does not keep).
template <typename Take>
void ForEachReceivedFd(msghdr* msg, Take&& take) {
  for (cmsghdr* c = FirstCmsg(msg); c != nullptr; c = NextCmsg(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = CmsgPayloadBytes(msg, c) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      __builtin_memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      take(fd);
    }
  }
}

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_CONTROL_DATA_H_
