// DispatchScheduler: one worker's connections on their way to backends,
// with no ring and no clock of its own, so that it can be tested alone.
//
//   slots      each connection in dispatch holds one (its fd, backend and
//              deadline) from Dispatch until its send succeeds or it is
//              closed; the count bounds what a worker holds;
//   order      a backend that cannot take a connection now (queue full,
//              down) gets a FIFO of waiting slots; later dispatches queue
//              behind it, so a backend sees connections in dispatch order;
//   congested  a full queue (EAGAIN) asks the transport for one writability
//              watch per backend; when it fires, a burst about the size of
//              what went through last time is sent;
//   down       a backend that went away is reconnected with backoff
//              (BackendTable) while its connections wait;
//   deadlines  a connection that waited past --dispatch-timeout is closed
//              and counted (timeout, backend_down or resources);
//   held       to a receiver that acknowledges (receiver protocol), a sent
//              connection keeps its slot and our copy of its fd until the
//              receiver's ack says it was taken, or its deadline passes. If
//              the receiver's socket goes away first (a send or a probe
//              fails), what it had not taken is sent again (redelivered)
//              within what is left of its deadline, or counted as
//              backend_lost: nothing disappears uncounted, and nothing is
//              held past the deadline set at accept;
//   shares     a backend past `backend_share` slots (waiting, in flight
//              and held together) gives up its oldest held connection for
//              each new one: released unconfirmed (the receiver has it). A
//              backend that never acks holds no more than its share of our
//              slots and fds; one that never reads, no longer than the
//              deadline.
//
// The worker supplies the transport (io_uring SENDMSG + linked CLOSE, or
// sendmsg(2) + close(2)) and feeds results back. A backend the scheduler
// tracks (sends in flight, waiting slots, a watch, or listed for timers) is
// busy, and BackendTable never evicts a busy backend.
#ifndef SBX_ENGINE_DISPATCH_DISPATCH_SCHEDULER_H_
#define SBX_ENGINE_DISPATCH_DISPATCH_SCHEDULER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "engine/core/receiver_protocol.h"
#include "engine/dispatch/backend_table.h"
#include "engine/dispatch/stats.h"

namespace sbx {

// What the scheduler asks of its worker.
class DispatchTransport {
 public:
  virtual ~DispatchTransport() = default;
  // Starts sending `conn_fd` to `b`; the result comes back through
  // OnSendResult(slot, res) later (never from inside this call). After a
  // successful send the transport closes `conn_fd` itself, unless
  // `keep_open` (the scheduler holds it until the receiver's ack).
  virtual void StartSend(uint32_t slot, int conn_fd, Backend* b, bool keep_open) = 0;
  // Closes a connection that will not be delivered.
  virtual void CloseConnection(int conn_fd) = 0;
  // Asks for OnWritable(b) once b's queue has room (at most one at a time).
  virtual void WatchWritable(Backend* b) = 0;
  // The -i peer is gone (the original exits 11): nothing can be delivered.
  virtual void ForcedPeerGone() = 0;
  // Receiver protocol. Before b's socket is retired: appends to `answers`
  // every answer still queued for it (so that no ack is lost with the
  // socket), and stops listening on it. The scheduler applies them itself,
  // after this returns.
  virtual void FinishReceiver(Backend* b, std::vector<ReceiverMessage>* answers) = 0;
  // Sends a probe to b's receiver; 0, or the send's -errno.
  virtual int Probe(Backend* b) = 0;
};

class DispatchScheduler {
 public:
  using Clock = std::function<uint64_t()>;

  struct Config {
    uint32_t slots = 16384;
    uint64_t timeout_ns = 0;         // 0: a full queue drops at once
    bool forced_fd = false;          // -i: a gone peer ends the daemon
    uint16_t fds_per_message = 1;    // what the transport packs at most (--fds-per-message)
    uint32_t backend_share = 16384;  // slots one backend may hold
  };

  DispatchScheduler(const Config& config, DispatchTransport* transport, BackendTable* backends,
                    WorkerStats* stats, Clock clock);

  // Takes `fd` (owned from here on: unique_fd.h says why it is an int) for
  // delivery to `b`. Without a free slot the connection is closed and
  // counted (overload).
  void Dispatch(int fd, Backend* b);
  // A send started by StartSend finished with `res` (>= 0, or -errno).
  void OnSendResult(uint32_t slot, int res);
  // The watch asked for by WatchWritable fired.
  void OnWritable(Backend* b);
  // A hello or an ack from b's receiver (receiver_protocol.h).
  void OnReceiverMessage(Backend* b, const ReceiverMessage& message);
  // Sends what was dispatched this turn to receivers that pack (grouped by
  // backend, so that it packs whatever order connections came in), then
  // expires deadlines, reconnects, and sends what can go now.
  void RunTimers();
  // When RunTimers next has work (`now` if it has some already).
  uint64_t NextTimer(uint64_t now, uint64_t idle_wake) const;

  uint32_t free_slots() const { return static_cast<uint32_t>(free_.size()); }
  uint32_t slot_count() const { return config_.slots; }
  bool idle() const { return free_slots() == slot_count(); }
  // Connections waiting in user space, for tests and counters.
  size_t waiting() const;
  // Connections sent and held for an ack.
  size_t held() const;

 private:
  struct Slot {
    int conn_fd = -1;  // owned by the slot until sent (then closed by the send's link) or dropped
    Backend* backend = nullptr;
    uint64_t deadline_ns = 0;
    bool keep_open = false;   // sent to an acknowledging receiver: held after
    uint32_t generation = 0;  // the backend's socket it was sent on
    uint64_t seq = 0;         // held: its place in the receiver's queue
    uint64_t sent_ns = 0;     // held: when it reached the queue
  };

  void StartSend(uint32_t slot);
  void Wait(uint32_t slot, bool returned);
  void Pump(Backend* b, uint64_t now);
  void Drop(uint32_t slot, DropReason reason);
  void Free(uint32_t slot);
  // When held slot `s` is released unconfirmed if no ack came.
  uint64_t HeldUntil(uint64_t sent_ns, uint64_t deadline_ns) const;
  void Unlist(size_t index);
  void Hold(uint32_t slot, uint64_t now);
  void Release(uint32_t slot, bool confirmed);
  void ReleaseHeld(Backend* b, bool confirmed);
  void LoseReceiver(Backend* b, int err, uint64_t now);
  void CheckHolding(uint64_t now);
  void SendReady();
  DropReason ExpiryReason(const Backend* b) const;

  Config config_;
  DispatchTransport* transport_;
  BackendTable* backends_;
  WorkerStats* stats_;
  Clock clock_;
  std::unique_ptr<Slot[]> slots_;
  std::vector<uint32_t> free_;
  std::vector<Backend*> listed_;           // backends with waiting slots, for timers
  std::vector<Backend*> holding_;          // backends with held slots
  std::vector<Backend*> readying_;         // backends with ready slots, this turn
  std::vector<uint32_t> sending_;          // SendReady's scratch list
  std::vector<ReceiverMessage> finished_;  // LoseReceiver's: what FinishReceiver drained
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_DISPATCH_SCHEDULER_H_
