// FdBatch: the storage the kernel reads for one IORING_OP_SENDMSG that
// carries one or several connections ("A" protocol: one data byte, 0x00,
// and one SCM_RIGHTS control message), and which dispatch slots they are.
// Several only to a receiver that declared it takes them (receiver
// protocol); anything else gets exactly one, as from the original.
//
// The io_uring worker keeps one per dispatch slot, named by the slot of the
// batch's first connection; its address stays stable until the send's
// completion. Connections are added only before the send is submitted.
#ifndef SBX_ENGINE_DISPATCH_FD_BATCH_H_
#define SBX_ENGINE_DISPATCH_FD_BATCH_H_

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <cstring>

#include "engine/dispatch/worker_config.h"

namespace sbx {

struct FdBatch {
  static constexpr unsigned kFdsPerMessageLimit = sbx::kFdsPerMessageLimit;

  // Left uninitialized until Start: a worker's 16,384 batches (5.7 MiB)
  // then cost memory only for the slots in use.
  msghdr hdr;
  iovec iov;
  uint8_t byte;
  unsigned count;
  uint32_t slots[kFdsPerMessageLimit];
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(kFdsPerMessageLimit * sizeof(int))];

  FdBatch() {}                       // NOLINT: deliberately not value-initializing
  FdBatch(const FdBatch&) = delete;  // hdr points into this object
  FdBatch& operator=(const FdBatch&) = delete;

  // Starts the message with its first connection.
  void Start(uint32_t slot, int fd) {
    byte = 0;
    iov.iov_base = &byte;
    iov.iov_len = 1;
    hdr = {};
    hdr.msg_iov = &iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control;
    count = 0;
    Add(slot, fd);
  }

  bool full() const { return count == kFdsPerMessageLimit; }

  // Adds a connection (count < kFdsPerMessageLimit).
  void Add(uint32_t slot, int fd) {
    auto* c = reinterpret_cast<cmsghdr*>(control);
    slots[count] = slot;
    std::memcpy(CMSG_DATA(c) + count * sizeof(int), &fd, sizeof(int));
    ++count;
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(count * sizeof(int));
    hdr.msg_controllen = CMSG_SPACE(count * sizeof(int));
  }
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_FD_BATCH_H_
