// AnswerReceives: the io_uring worker's ears for the receiver protocol
// (engine/core/receiver_protocol.h). One RECV armed on each path backend's
// socket for its receiver's hellos and acks, handed to the scheduler as
// they come; a receiver that floods is read a bounded number of answers at
// a time, and paused between. Answers relayed from other network
// namespaces (reply_relay.h) are applied alike. When a backend's socket
// goes, Finish returns what was still queued for it instead of applying it,
// so that the scheduler applies it at the point of its own choosing.
#ifndef SBX_ENGINE_DISPATCH_ANSWER_RECEIVES_H_
#define SBX_ENGINE_DISPATCH_ANSWER_RECEIVES_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/core/receiver_protocol.h"
#include "engine/dispatch/backend_table.h"
#include "engine/dispatch/dispatch_scheduler.h"
#include "engine/dispatch/worker_ring.h"
#include "engine/kernel/reply_relay.h"

namespace sbx {

class AnswerReceives {
 public:
  // `relay` may be null (no kernel dispatch); `worker` is this worker's
  // index in it.
  AnswerReceives(WorkerRing* ring, DispatchScheduler* scheduler, BackendTable* backends,
                 ReplyRelay* relay, int worker);
  ~AnswerReceives();
  AnswerReceives(const AnswerReceives&) = delete;
  AnswerReceives& operator=(const AnswerReceives&) = delete;

  // Listens on b's current socket (a receive left on an old one is ended),
  // if b is a path backend: a cancel of the old receive, if any, then the
  // new receive.
  void Listen(Backend* b);
  // The completion of a receive (UringOp::kAnswer): applies what it read and
  // what else is queued, up to a bound, and listens on.
  void OnCompletion(uint64_t user_data, int res, uint64_t now);
  // Applies the answers relayed from other network namespaces.
  void ApplyRelayed();
  // Before b's socket is retired: appends to `out` every answer still on
  // its way (read by a receive whose completion waits for the next turn,
  // relayed, or queued on the socket), and stops listening.
  void Finish(Backend* b, std::vector<ReceiverMessage>* out);
  // Arms again the receives paused since a flood, once their pause is over.
  void ResumePaused(uint64_t now);
  // The earliest of `next` and the end of a pause.
  uint64_t NextResume(uint64_t next) const;

 private:
  struct Receive;

  void Arm(Receive* r);
  // Ends the receive of `r`: cancelled if armed (its completion then frees
  // it), freed now if paused.
  void Discard(Receive* r);
  void Apply(Backend* b, const unsigned char* data, ssize_t len);
  void TakeRelayed();

  WorkerRing* ring_;
  DispatchScheduler* scheduler_;
  BackendTable* backends_;
  ReplyRelay* relay_;
  int worker_;
  // Owned here until their completion; the listening ones by backend.
  absl::flat_hash_map<Receive*, std::unique_ptr<Receive>> receives_;
  absl::flat_hash_map<const Backend*, Receive*> listening_;
  std::vector<Receive*> paused_;       // of flooding receivers: armed again later
  std::vector<RelayedReply> relayed_;  // taken from the relay, not yet applied
  std::vector<RelayedReply> taken_;    // TakePending's, reused
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_ANSWER_RECEIVES_H_
