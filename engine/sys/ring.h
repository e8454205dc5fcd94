// Ring: one io_uring, owned (RAII), for one thread. What the workers need
// of liburing 2.3 plus what it lacks: submissions whose result is checked
// by the caller, and a wait that batches within a latency budget.
//
// SubmitAndWait(wait_nr, timeout, min_wait): hands over what was prepared
// and waits for `wait_nr` completions or `timeout`. With `min_wait` on a
// kernel that has IORING_FEAT_MIN_TIMEOUT (Linux 6.12), the kernel waits
// for `wait_nr` completions only up to `min_wait`; then it returns as soon
// as one completion is there. So a busy worker reaps completions in
// batches, while one that found nothing within `min_wait` is woken by the
// very next completion: a quiet connection is never held back (measured
// cost: docs/architecture.md; the daemon uses it only with --batch-wait). liburing
// 2.3 knows nothing of min_wait (the field was padding in its
// io_uring_getevents_arg), so this calls io_uring_enter2 itself.
//
// The engine's workers, the relay, the bench sink and the load generator
// all drive their rings through this class.
#ifndef SBX_ENGINE_SYS_RING_H_
#define SBX_ENGINE_SYS_RING_H_

#include <liburing.h>

#include <cerrno>
#include <cstdint>

namespace sbx {

// IORING_FEAT_MIN_TIMEOUT (Linux 6.12), not in liburing 2.3's header.
inline constexpr unsigned kFeatMinTimeout = 1U << 15;
// SubmitAndWait's timeout that means none: wait until the completions come.
inline constexpr uint64_t kNoTimeout = ~uint64_t{0};

// Results of io_uring_enter that only mean "try again": a wait that timed
// out or was interrupted, a kernel short of memory or with completions to
// flush first. Anything else means the ring itself failed.
inline bool IsTransientEnterError(int rc) {
  return rc == -ETIME || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY;
}

class Ring {
 public:
  Ring() = default;
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // 0 or -errno.
  int Init(unsigned entries, unsigned cq_entries, unsigned flags);
  // Tears the ring down now (as the destructor would): what is in flight is
  // cancelled and waited for, so no request touches its buffers afterwards.
  // Nothing may be prepared or submitted after it.
  void Exit();
  // Init with `flags`; if the kernel refuses them (-EINVAL: an older kernel
  // without, say, DEFER_TASKRUN), Init with `fallback_flags` instead.
  int InitWithFallback(unsigned entries, unsigned cq_entries, unsigned flags,
                       unsigned fallback_flags);

  // The next free submission entry, or nullptr when the queue is full.
  io_uring_sqe* GetSqe() { return io_uring_get_sqe(&ring_); }
  unsigned SpaceLeft() { return io_uring_sq_space_left(&ring_); }
  // The next free submission entry; when the queue is full, hands what was
  // prepared to the kernel first. nullptr only if that submission failed
  // and left the queue full (Submit() returns why).
  io_uring_sqe* GetSqeOrSubmit();
  // Makes room for `n` entries that must go in one submission (a linked
  // chain) by submitting what was prepared when fewer are free. False if
  // they still are not (a failed submission, or `n` above the queue size).
  bool MakeRoomFor(unsigned n);

  // Hands over what was prepared. Submitted count, or -errno.
  int Submit();
  // Hands over what was prepared and waits (see above; kNoTimeout: for as
  // long as it takes). Submitted count, or -errno (-ETIME: the timeout
  // passed with fewer completions).
  int SubmitAndWait(unsigned wait_nr, uint64_t timeout_ns, uint64_t min_wait_ns);
  // Hands over what was prepared and runs the requests waiting behind a
  // link, without waiting for completions: to the end unless `bound`
  // completions (those already in the queue included) are there first
  // (ring.cc says why). Submitted count, or -errno (-ETIME when nothing was
  // submitted).
  int SubmitAndRunLinked(unsigned bound);
  // Completions ready to be read.
  unsigned Ready() { return io_uring_cq_ready(&ring_); }
  // Calls handle(const io_uring_cqe*) for each completion ready, those
  // posted while it runs included (a submission from the handler can post
  // some at once), then marks them all seen. Returns how many.
  template <typename Handle>
  unsigned ForEachCompletion(Handle&& handle);

  // io_uring_enter calls made so far (a count for the programs' metrics).
  uint64_t enter_calls() const { return enter_calls_; }

  // The completion queue by index, for a caller that handles a fixed range
  // and may look past it: [CompletionHead(), CompletionTail()) are ready,
  // Completion(i) is the one at index i, and Consume(n) hands the first n
  // back to the kernel.
  unsigned CompletionHead() { return *ring_.cq.khead; }
  unsigned CompletionTail() { return io_uring_smp_load_acquire(ring_.cq.ktail); }
  const io_uring_cqe* Completion(unsigned index) {
    return &ring_.cq.cqes[io_uring_cqe_index(&ring_, index, ring_.cq.ring_mask)];
  }
  void Consume(unsigned n) { io_uring_cq_advance(&ring_, n); }

  bool has_min_wait() const { return (ring_.features & kFeatMinTimeout) != 0; }
  io_uring* get() { return &ring_; }

 private:
  unsigned FlushSubmissions();
  // io_uring_enter2 with GETEVENTS and an extended argument; a zero timeout
  // returns as soon as the deferred work allowed by wait_nr has run.
  int Enter(unsigned wait_nr, uint64_t timeout_ns, uint32_t min_wait_usec);

  io_uring ring_{};
  bool ready_ = false;
  uint64_t enter_calls_ = 0;
};

template <typename Handle>
unsigned Ring::ForEachCompletion(Handle&& handle) {
  unsigned head;
  unsigned seen = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    handle(static_cast<const io_uring_cqe*>(cqe));
    ++seen;
  }
  io_uring_cq_advance(&ring_, seen);
  return seen;
}

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_RING_H_
