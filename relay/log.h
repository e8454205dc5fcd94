// What the relay says on stderr. Its lines go through the shared logger
// (engine/sys/stderr_log.h: "socketbox-relay: ...", one write per line, so
// that worker threads' lines do not interleave), except the per-connection
// line in the original's format, which has no prefix (relay/diagnostics.cc).
// LogOnce reports the first event of each kind and stays quiet for the rest
// (the counters keep the number): a flood of refused connects must not
// become a flood of lines.
#ifndef SBX_RELAY_LOG_H_
#define SBX_RELAY_LOG_H_

#include <atomic>

#include "engine/sys/stderr_log.h"

namespace sbx::relay {

// How much the relay says on stderr. kOriginal: the per-connection line in
// the original's format ("EPOCH [client]:port -> [local]:port", no prefix),
// and otherwise only what reports a failure or answers SIGUSR1. kDetailed:
// prefixed lines with ISO 8601 times, and the drain and exit summaries.
enum class LogFormat { kOriginal, kDetailed };

template <int N>
class LogOnce {
 public:
  // True the first time `kind` is seen (by any thread).
  bool First(int kind) { return !seen_[kind].exchange(true, std::memory_order_relaxed); }

 private:
  std::atomic<bool> seen_[N]{};
};

}  // namespace sbx::relay

#endif  // SBX_RELAY_LOG_H_
