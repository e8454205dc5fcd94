// Command line of bench/load_generator.
//
//   --target [ADDR]:PORT=GREETING  a destination and the greeting its backend
//                                  sends (repeatable; connections rotate over them)
//   --concurrency C                closed loop: C connections in flight (default 64)
//   --rate R                       open loop: start R connections/s instead
//   --connections N                stop starting after N connections in all
//   --duration S                   stop starting after S seconds
//                                  (at least one of the two; both: whichever first)
//   --threads T                    generator threads (default 1)
//   --timeout-ms MS                per-connection deadline, connect to greeting (5000)
//   --io uring|epoll               event mechanism (default: uring, the cheaper)
//   --max-in-flight M              open loop: cap on connections in flight (20000)
#ifndef SBX_BENCH_LOADGEN_LOADGEN_OPTIONS_H_
#define SBX_BENCH_LOADGEN_LOADGEN_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/core/address.h"

namespace sbx::bench {

struct Target {
  SocketAddress address;
  std::string text;      // as given, for the report
  std::string greeting;  // what a correctly routed connection receives
};

enum class IoMode { kUring, kEpoll };

struct LoadOptions {
  std::vector<Target> targets;
  uint64_t concurrency = 64;
  double rate = 0;           // > 0: open loop
  uint64_t connections = 0;  // 0: unbounded (then duration bounds the run)
  double duration_s = 0;     // 0: unbounded (then connections bounds the run)
  unsigned threads = 1;
  uint64_t timeout_ms = 5000;
  IoMode io = IoMode::kUring;
  uint64_t max_in_flight = 20000;
};

// The options, or nullopt after printing why (exit code in *exit_code).
std::optional<LoadOptions> ParseLoadOptions(int argc, char** argv, int* exit_code);

}  // namespace sbx::bench

#endif  // SBX_BENCH_LOADGEN_LOADGEN_OPTIONS_H_
