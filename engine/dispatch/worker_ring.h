// WorkerRing: the io_uring worker's side of its ring (sys::Ring), the one
// layer the worker and its parts (SendChain, AnswerReceives) submit
// through:
//   entries    Get() never fails: a full submission queue is handed to the
//              kernel first; EnsureRoom(n) submits early so that a group of
//              n entries prepared next (a linked chain) is not cut;
//   enters     every io_uring_enter made is counted (a submission with
//              nothing prepared makes none), and its result checked: a
//              failed ring calls on_failure once (the worker stops the
//              daemon), a transient error is only retried later;
//   links      requests prepared behind a link are counted, and RunLinked
//              runs them to the end in one enter that does not wait
//              (docs/architecture.md, "Linked requests run to the end");
//   batches    a turn handles a fixed range of completions; completions
//              posted during the turn wait for the next one, and can be
//              looked at before then (ForEachLater).
#ifndef SBX_ENGINE_DISPATCH_WORKER_RING_H_
#define SBX_ENGINE_DISPATCH_WORKER_RING_H_

#include <liburing.h>

#include <cstdint>
#include <functional>

#include "engine/dispatch/stats.h"
#include "engine/sys/ring.h"

namespace sbx {

class WorkerRing {
 public:
  // `enters` counts io_uring_enter calls; `on_failure(err)` runs once, when
  // an enter fails with anything but a transient error.
  WorkerRing(Counter* enters, std::function<void(int err)> on_failure);
  WorkerRing(const WorkerRing&) = delete;
  WorkerRing& operator=(const WorkerRing&) = delete;

  // 0 or -errno (Ring::Init).
  int Init(unsigned entries, unsigned cq_entries, unsigned flags) {
    return ring_.Init(entries, cq_entries, flags);
  }

  // An entry to prepare. Once the ring failed, possibly one the kernel
  // never sees, so that callers need no error path (the worker stops at
  // the end of the turn).
  io_uring_sqe* Get() {
    io_uring_sqe* sqe = ring_.GetSqe();
    if (sqe == nullptr) sqe = GetAfterSubmit();
    last_prepared_ = sqe;
    return sqe;
  }
  // Submits now unless `n` entries are free.
  void EnsureRoom(unsigned n) {
    if (ring_.SpaceLeft() < n) Submit();
  }
  // Hands over what was prepared; false if the ring failed.
  bool Submit();
  // Submits and waits (Ring::SubmitAndWait).
  void SubmitAndWait(unsigned wait_nr, uint64_t timeout_ns, uint64_t min_wait_ns);

  // One more request was prepared behind a link.
  void NoteLinked() { ++linked_pending_; }
  bool has_linked() const { return linked_pending_ > 0; }
  // Submits, and runs every request waiting behind a link.
  void RunLinked();
  // The last submission before the ring goes: what waits behind a link
  // runs too (a ring torn down would leave it unissued, its fds open).
  void Flush();

  bool failed() const { return failed_; }
  bool has_min_wait() const { return ring_.has_min_wait(); }
  // Submission points so far (empty ones too, unlike the enters counted):
  // a link chain never spans two.
  uint64_t submissions() const { return submissions_; }
  // The entry Get returned last: a chain goes on only from its own tail.
  const io_uring_sqe* last_prepared() const { return last_prepared_; }
  // Completions ready, handled or not.
  unsigned Ready() { return ring_.Ready(); }

  // The completions of one turn: [first, end) at the time it was taken.
  struct Batch {
    unsigned first = 0;
    unsigned end = 0;
    unsigned size() const { return end - first; }
  };
  Batch TakeBatch() {
    const Batch batch{ring_.CompletionHead(), ring_.CompletionTail()};
    later_from_ = batch.end;
    return batch;
  }
  const io_uring_cqe* At(unsigned index) { return ring_.Completion(index); }
  void Consume(const Batch& batch) { ring_.Consume(batch.size()); }
  // Calls f(cqe) for each completion posted after the last batch was taken
  // (left for the next turn).
  template <typename F>
  void ForEachLater(F&& f) {
    const unsigned tail = ring_.CompletionTail();
    for (unsigned i = later_from_; i != tail; ++i) f(At(i));
  }

 private:
  io_uring_sqe* GetAfterSubmit();
  void CheckEnter(int rc);
  // Adds the enters Ring made since it counted `before` to `enters_`.
  void CountEnters(uint64_t before);

  Ring ring_;
  Counter* enters_;
  std::function<void(int err)> on_failure_;
  bool failed_ = false;
  uint64_t submissions_ = 0;
  unsigned linked_pending_ = 0;  // prepared behind a link since the last RunLinked
  const io_uring_sqe* last_prepared_ = nullptr;
  unsigned later_from_ = 0;  // completions from here on are for the next turn
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_WORKER_RING_H_
