// ListenerState: whether one of a worker's listeners may accept now, kept
// and decided the same way by the io_uring and the sync worker.
//
// A listener is accepting, or starved: its last accept found no fd or
// memory (EMFILE, ENFILE, ENOMEM, ENOBUFS). The connection then stays
// queued in the kernel (accept takes the fd first), and the listener tries
// again once one of the worker's own connections has left (its fd is then
// free) or after a short pause, while the worker's other listeners go on.
// The worker's own state (stopping, dispatch slots running low) closes all
// of its listeners alike.
#ifndef SBX_ENGINE_DISPATCH_LISTENER_STATE_H_
#define SBX_ENGINE_DISPATCH_LISTENER_STATE_H_

#include <algorithm>
#include <cstdint>

namespace sbx {

class ListenerState {
 public:
  enum class Phase : uint8_t { kAccepting, kStarved };

  // How long a starved listener waits at most.
  static constexpr uint64_t kStarvedPauseNs = 5'000'000;

  Phase phase() const { return phase_; }

  // An accept returned a connection.
  void Accepted() { phase_ = Phase::kAccepting; }
  // An accept at `now` found no fd or memory. True when the listener was
  // accepting until then (a pause to count).
  bool Starved(uint64_t now) {
    const bool was_accepting = phase_ == Phase::kAccepting;
    phase_ = Phase::kStarved;
    resume_at_ns_ = now + kStarvedPauseNs;
    return was_accepting;
  }

  // Whether it may accept at `now`. `worker_open`: the worker neither stops
  // nor ran low on dispatch slots; `fd_freed`: one of its connections left
  // this turn.
  bool MayAccept(bool worker_open, bool fd_freed, uint64_t now) const {
    if (!worker_open) return false;
    return phase_ == Phase::kAccepting || fd_freed || now >= resume_at_ns_;
  }
  // The earlier of `next` and the end of a pause still to come after `now`.
  uint64_t NextRetry(uint64_t now, uint64_t next) const {
    if (phase_ != Phase::kStarved || resume_at_ns_ <= now) return next;
    return std::min(next, resume_at_ns_);
  }

 private:
  Phase phase_ = Phase::kAccepting;
  uint64_t resume_at_ns_ = 0;
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_LISTENER_STATE_H_
