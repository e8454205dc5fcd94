// What a worker needs of the command line: the forced action (-S, -i), -U,
// -z, the dispatch deadline, the packing and the batched wait. The daemon
// fills it from its Options (WorkerConfigOf); the dispatch path never sees
// the rest (privileges, listeners, the handover, metrics).
#ifndef SBX_ENGINE_DISPATCH_WORKER_CONFIG_H_
#define SBX_ENGINE_DISPATCH_WORKER_CONFIG_H_

#include <optional>
#include <string>

namespace sbx {

// The most connections packed into one message (--fds-per-message), so the
// size of a worker's per-slot message buffers. Distinct from what the
// receiver protocol lets a receiver declare (kMaxFdsPerMessage, 64) and
// from the handover's batches (kMaxFdsPerHandoverMessage).
inline constexpr int kFdsPerMessageLimit = 32;

struct WorkerConfig {
  std::optional<std::string> forced_path;  // -S: every connection to this socket
  std::optional<int> forced_fd;            // -i: every connection over this fd
  bool substitute = false;                 // -U: #//N_ tokens in socket paths
  bool clear_transparent = false;          // -z
  int dispatch_timeout_ms = 2000;
  int fds_per_message = 16;  // 1..kFdsPerMessageLimit
  int batch_wait_us = 0;     // io_uring: the kernel's min-wait (0: adaptive)

  bool has_forced_action() const { return forced_path.has_value() || forced_fd.has_value(); }
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_WORKER_CONFIG_H_
