// SendChain: the io_uring worker's sends as the kernel gets them.
//   send    one IORING_OP_SENDMSG (MSG_DONTWAIT: a full backend queue
//           answers EAGAIN at once, and the scheduler asks for one POLLOUT;
//           sends left waiting in the kernel would all be woken each time
//           the backend reads one message) of an FdBatch on the backend's
//           socket, tagged with the slot of the message's first connection;
//   close   behind it, unless the connection is held (keep_open), the
//           CLOSE of our copy, linked: no completion on success, cancelled
//           (the connection stays ours) when the send fails;
//   chain   sends to one backend prepared back to back in one submission
//           are linked, so that once one finds the queue full the rest are
//           cancelled untried and go back in line. Links are positional (an
//           entry links to the next one in the ring), so a chain grows only
//           while nothing else was prepared in between, and never across
//           two submissions;
//   join    to a receiver that takes several fds per message, a send joins
//           the chain's last message instead while it has room: SENDMSG,
//           CLOSE, CLOSE, ... with the closes hard-linked to each other
//           (each runs whatever the one before did), all cancelled if the
//           send fails.
// docs/architecture.md ("A full backend queue", "The close rides on the
// send", "Several fds per message") says why.
#ifndef SBX_ENGINE_DISPATCH_SEND_CHAIN_H_
#define SBX_ENGINE_DISPATCH_SEND_CHAIN_H_

#include <liburing.h>

#include <cstdint>
#include <memory>

#include "engine/dispatch/backend_table.h"
#include "engine/dispatch/fd_batch.h"
#include "engine/dispatch/worker_ring.h"

namespace sbx {

class SendChain {
 public:
  // One message per dispatch slot, `slots` of them.
  SendChain(WorkerRing* ring, uint32_t slots);

  // Prepares the send of `conn_fd` (dispatch slot `slot`) to `b`, which
  // takes up to b.receiver.max_fds fds per message.
  void Add(uint32_t slot, int conn_fd, const Backend& b, bool keep_open);
  // The message whose send completion names `first_slot`; valid until
  // that completion is handled.
  const FdBatch& message(uint32_t first_slot) const { return messages_[first_slot]; }

 private:
  // Whether the chain's tail is the last entry prepared, in this
  // submission, for `b`.
  bool GoesOn(const Backend& b) const;
  // Prepares the CLOSE of our copy behind the entry before it.
  io_uring_sqe* PrepareClose(uint32_t slot, int conn_fd);

  WorkerRing* ring_;
  std::unique_ptr<FdBatch[]> messages_;
  // The chain being built.
  const Backend* backend_ = nullptr;
  io_uring_sqe* tail_ = nullptr;
  uint64_t submission_ = 0;
  FdBatch* open_ = nullptr;  // its last message, still open for more fds
  bool keep_open_ = false;   // that message's fds are held (no linked closes)
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_SEND_CHAIN_H_
