#include "engine/dispatch/send_chain.h"

#include <sys/socket.h>

#include "engine/dispatch/uring_ops.h"

namespace sbx {

SendChain::SendChain(WorkerRing* ring, uint32_t slots)
    : ring_(ring), messages_(new FdBatch[slots]) {}  // default-initialized: untouched until used

bool SendChain::GoesOn(const Backend& b) const {
  return backend_ == &b && tail_ == ring_->last_prepared() && submission_ == ring_->submissions();
}

void SendChain::Add(uint32_t slot, int conn_fd, const Backend& b, bool keep_open) {
  const bool joins = GoesOn(b) && open_ != nullptr && keep_open_ == keep_open &&
                     open_->count < b.receiver.max_fds && !open_->full();
  // Room for what this call prepares (a CLOSE to join the open message; a
  // SENDMSG and its CLOSE otherwise), so that no link is cut by a
  // submission; a submission made here ends the chain (GoesOn is then
  // false).
  ring_->EnsureRoom(joins ? 1 : 2);
  if (joins && GoesOn(b)) {
    open_->Add(slot, conn_fd);
    if (!keep_open) {
      tail_->flags |= IOSQE_IO_HARDLINK;
      ring_->NoteLinked();
      tail_ = PrepareClose(slot, conn_fd);
    }
    return;
  }
  if (GoesOn(b)) {
    // After a CLOSE, a hard link: its failure (never expected) must not
    // cancel the next message, whose sends would then post no completion
    // (the close skips its own). After a held message's SENDMSG, a plain
    // link: a full queue cancels the rest untried.
    tail_->flags |= keep_open_ ? IOSQE_IO_LINK : IOSQE_IO_HARDLINK;
    ring_->NoteLinked();
  }
  FdBatch& message = messages_[slot];
  message.Start(slot, conn_fd);
  io_uring_sqe* send = ring_->Get();
  io_uring_prep_sendmsg(send, b.fd(), &message.hdr, MSG_NOSIGNAL | MSG_DONTWAIT);
  io_uring_sqe_set_data64(send, UringTag(UringOp::kSend, slot));
  io_uring_sqe* tail = send;
  if (!keep_open) {
    send->flags |= IOSQE_IO_LINK;
    ring_->NoteLinked();
    tail = PrepareClose(slot, conn_fd);
  }
  backend_ = &b;
  tail_ = tail;
  submission_ = ring_->submissions();
  open_ = &message;
  keep_open_ = keep_open;
}

io_uring_sqe* SendChain::PrepareClose(uint32_t slot, int conn_fd) {
  io_uring_sqe* close = ring_->Get();
  io_uring_prep_close(close, conn_fd);
  close->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(close, UringTag(UringOp::kLinkedClose, slot));
  return close;
}

}  // namespace sbx
