// The monotonic clock in nanoseconds: deadlines, backoff, rate limits.
#ifndef SBX_ENGINE_SYS_CLOCK_H_
#define SBX_ENGINE_SYS_CLOCK_H_

#include <cstdint>
#include <ctime>

namespace sbx {

inline uint64_t MonotonicNs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_CLOCK_H_
