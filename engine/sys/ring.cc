#include "engine/sys/ring.h"

#include <signal.h>

#include <cerrno>

namespace sbx {
namespace {

// io_uring_getevents_arg as Linux 6.12 reads it (liburing 2.3 calls the
// min_wait_usec field `pad`).
struct GetEventsArg {
  uint64_t sigmask;
  uint32_t sigmask_sz;
  uint32_t min_wait_usec;
  uint64_t ts;
};
static_assert(sizeof(GetEventsArg) == sizeof(io_uring_getevents_arg));

int Errno(int rc) { return rc == -1 ? -errno : rc; }

}  // namespace

Ring::~Ring() { Exit(); }

void Ring::Exit() {
  if (ready_) io_uring_queue_exit(&ring_);
  ready_ = false;
}

int Ring::Init(unsigned entries, unsigned cq_entries, unsigned flags) {
  io_uring_params params{};
  params.flags = flags | IORING_SETUP_CQSIZE;
  params.cq_entries = cq_entries;
  const int err = io_uring_queue_init_params(entries, &ring_, &params);
  if (err < 0) return err;
  ready_ = true;
  // Submission slot i always names entry i (what liburing sets up too), so
  // that handing entries over is a store of the tail.
  for (unsigned i = 0; i < ring_.sq.ring_entries; ++i) ring_.sq.array[i] = i;
  return 0;
}

int Ring::InitWithFallback(unsigned entries, unsigned cq_entries, unsigned flags,
                           unsigned fallback_flags) {
  const int err = Init(entries, cq_entries, flags);
  if (err != -EINVAL || flags == fallback_flags) return err;
  return Init(entries, cq_entries, fallback_flags);
}

io_uring_sqe* Ring::GetSqeOrSubmit() {
  io_uring_sqe* sqe = GetSqe();
  if (sqe != nullptr) return sqe;
  Submit();
  return GetSqe();
}

bool Ring::MakeRoomFor(unsigned n) {
  if (SpaceLeft() < n) Submit();
  return SpaceLeft() >= n;
}

unsigned Ring::FlushSubmissions() {
  io_uring_sq& sq = ring_.sq;
  const unsigned tail = sq.sqe_tail;
  if (sq.sqe_head != tail) {
    sq.sqe_head = tail;
    // The entries' stores happen before the kernel sees the new tail.
    io_uring_smp_store_release(sq.ktail, tail);
  }
  return tail - io_uring_smp_load_acquire(sq.khead);
}

int Ring::Submit() {
  const unsigned pending = FlushSubmissions();
  if (pending == 0) return 0;
  ++enter_calls_;
  return Errno(io_uring_enter(ring_.ring_fd, pending, 0, 0, nullptr));
}

int Ring::SubmitAndWait(unsigned wait_nr, uint64_t timeout_ns, uint64_t min_wait_ns) {
  uint32_t min_wait_usec = 0;
  if (has_min_wait() && min_wait_ns > 0)
    min_wait_usec = static_cast<uint32_t>((min_wait_ns + 999) / 1000);
  return Enter(wait_nr, timeout_ns, min_wait_usec);
}

int Ring::SubmitAndRunLinked(unsigned bound) {
  // On a DEFER_TASKRUN ring the request behind a linked one is issued as
  // deferred task work once its predecessor completes, and an enter runs
  // that work only until `wait_nr` completions are there (measured on 6.18): with
  // completions ready, a chain moves a link or two per enter. Asked for more
  // completions than can come, the kernel runs deferred work until none is
  // left; the zero timeout then returns instead of waiting for them.
  return Enter(bound, 0, 0);
}

int Ring::Enter(unsigned wait_nr, uint64_t timeout_ns, uint32_t min_wait_usec) {
  const unsigned pending = FlushSubmissions();
  __kernel_timespec ts{static_cast<long long>(timeout_ns / 1'000'000'000),
                       static_cast<long long>(timeout_ns % 1'000'000'000)};
  GetEventsArg arg{};
  arg.sigmask_sz = _NSIG / 8;
  if (timeout_ns != kNoTimeout) arg.ts = reinterpret_cast<uintptr_t>(&ts);
  arg.min_wait_usec = min_wait_usec;
  ++enter_calls_;
  return Errno(io_uring_enter2(ring_.ring_fd, pending, wait_nr,
                               IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                               reinterpret_cast<sigset_t*>(&arg), sizeof(arg)));
}

}  // namespace sbx
