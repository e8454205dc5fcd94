#include "engine/dispatch/worker_ring.h"

#include <cerrno>
#include <utility>

namespace sbx {

WorkerRing::WorkerRing(Counter* enters, std::function<void(int err)> on_failure)
    : enters_(enters), on_failure_(std::move(on_failure)) {}

io_uring_sqe* WorkerRing::GetAfterSubmit() {
  while (true) {
    // The submission queue is full: hand it to the kernel and go on.
    Submit();
    if (io_uring_sqe* sqe = ring_.GetSqe()) return sqe;
    if (failed_) {
      static thread_local io_uring_sqe scratch;
      return &scratch;
    }
  }
}

void WorkerRing::CountEnters(uint64_t before) {
  // Ring counts the system calls it makes: a submission with nothing
  // prepared makes none.
  if (const uint64_t made = ring_.enter_calls() - before) Bump(*enters_, made);
}

bool WorkerRing::Submit() {
  const uint64_t before = ring_.enter_calls();
  CheckEnter(ring_.Submit());
  CountEnters(before);
  return !failed_;
}

void WorkerRing::SubmitAndWait(unsigned wait_nr, uint64_t timeout_ns, uint64_t min_wait_ns) {
  const uint64_t before = ring_.enter_calls();
  CheckEnter(ring_.SubmitAndWait(wait_nr, timeout_ns, min_wait_ns));
  CountEnters(before);
}

void WorkerRing::RunLinked() {
  // An enter runs deferred work (the requests behind a link) only until
  // the completions it waits for are there, so it is asked for one per
  // linked request on top of those already in the queue (the kernel counts
  // those too), with a zero timeout. Requests in flight are not covered:
  // covering them kept every such enter waiting for its timeout, which cost
  // more than the few links their completions can leave for a later enter
  // (docs/architecture.md, "Linked requests run to the end").
  const unsigned bound = linked_pending_ + ring_.Ready();
  const uint64_t before = ring_.enter_calls();
  const int rc = ring_.SubmitAndRunLinked(bound);
  CheckEnter(rc);
  CountEnters(before);
  if (rc >= 0 || rc == -ETIME) linked_pending_ = 0;
}

void WorkerRing::Flush() {
  if (failed_) return;
  if (has_linked()) {
    RunLinked();
  } else {
    Submit();
  }
}

void WorkerRing::CheckEnter(int rc) {
  ++submissions_;
  if (rc >= 0 || IsTransientEnterError(rc) || failed_) return;
  // The ring itself failed: nothing submitted through it can work.
  failed_ = true;
  on_failure_(-rc);
}

}  // namespace sbx
