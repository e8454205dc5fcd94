// One sink worker: a thread with its own io_uring (SINGLE_ISSUER |
// DEFER_TASKRUN, so it is created on the worker thread) that
//   - keeps recv_depth RECVMSGs posted on every datagram / registration
//     channel,
//   - keeps one multishot ACCEPT armed on each of its TCP listeners, and on
//     each listener the engine gave (--take-listener, kernel dispatch),
//   - answers every socket with SEND(name) hard-linked to CLOSE, both with
//     CQE_SKIP_SUCCESS: a greeted connection costs no completion at all;
//   - with --max-fds N > 1 or --ack, speaks the receiver protocol on its
//     datagram channels (a SenderReplies per channel per worker: a hello
//     from each worker, acks counted by each for what it took).
// Channels are shared between workers (the kernel hands each datagram to one
// RECVMSG); listeners are per worker: SO_REUSEPORT copies, and the
// listeners taken from the engine dealt out to the workers in turn
// (sink_main.cc says why).
//
// Counters are atomics read by the main thread for the summary. Stops within
// ~100 ms after `stop` becomes true.
#ifndef SBX_BENCH_SINK_SINK_WORKER_H_
#define SBX_BENCH_SINK_SINK_WORKER_H_

#include <atomic>
#include <cstdint>
#include <latch>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/receiver_protocol.h"

namespace sbx::bench {

struct BackendCounters {
  std::atomic<uint64_t> received{0};      // sockets taken (received or accepted), per fd
  std::atomic<uint64_t> send_errors{0};   // greeting not sent (peer gone, not a socket)
  std::atomic<uint64_t> via_listener{0};  // of `received`: accepted from the engine's listener
};

struct SinkCounters {
  explicit SinkCounters(size_t backends) : per_backend(backends) {}
  std::vector<BackendCounters> per_backend;
  std::atomic<uint64_t> no_fd{0};           // a message that carried no fd
  std::atomic<uint64_t> extra_fds{0};       // fds beyond the declared max_fds (closed)
  std::atomic<uint64_t> channel_closed{0};  // a channel or listener that failed or ended
  std::atomic<uint64_t> close_errors{0};
};

struct SinkEndpoint {
  enum class Kind { kChannel, kListener };
  Kind kind = Kind::kChannel;
  int fd = -1;  // borrowed; outlives the worker
  size_t backend = 0;
  bool seqpacket = false;  // a registration channel: 0 bytes means the server left
  // Set once by whichever worker first sees this channel or listener fail,
  // so that channel_closed counts sources, not posted requests.
  std::atomic<bool>* failed = nullptr;
  bool taken = false;  // a listener the engine gave (kernel dispatch)
  int relay = -1;      // that listener's channel: answers across namespaces (borrowed)
};

struct SinkWorkerConfig {
  std::vector<SinkEndpoint> endpoints;
  const std::vector<std::string>* names = nullptr;  // greeting per backend index
  SinkCounters* counters = nullptr;
  const std::atomic<bool>* stop = nullptr;
  std::latch* ready = nullptr;        // counted down once the ring is armed (or failed)
  unsigned recv_depth = 1;            // RECVMSGs kept posted per channel
  ReceiverCapabilities capabilities;  // declared on datagram channels
};

// Runs until *stop; returns 0, or an errno if the ring could not be set up
// (after printing why).
int RunSinkWorker(const SinkWorkerConfig& config);

}  // namespace sbx::bench

#endif  // SBX_BENCH_SINK_SINK_WORKER_H_
