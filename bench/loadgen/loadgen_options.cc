#include "bench/loadgen/loadgen_options.h"

#include <cstdio>
#include <string_view>

#include "bench/common/args.h"

namespace sbx::bench {
namespace {

constexpr char kUsage[] =
    "usage: load_generator --target [ADDR]:PORT=GREETING [--target ...]\n"
    "         (--connections N | --duration S | both)\n"
    "         [--concurrency C | --rate R] [--threads T] [--timeout-ms MS]\n"
    "         [--io uring|epoll] [--max-in-flight M]\n"
    "Opens TCP connections (rotating over the targets), waits for each greeting,\n"
    "closes, and prints one JSON object: counts, error taxonomy, latency percentiles\n"
    "(connect start to first byte), CPU time. Exit 0 when it ran (errors included),\n"
    "2 on bad usage.\n";

void Fail(const char* what, std::string_view arg) {
  std::fprintf(stderr, "load_generator: %s: '%.*s'\n%s", what, static_cast<int>(arg.size()),
               arg.data(), kUsage);
}

bool ParseTarget(std::string_view arg, LoadOptions& options) {
  auto assign = SplitAssign(arg);
  auto address = assign ? ParseHostPort(assign->first) : std::nullopt;
  if (!address || address->port == 0) {
    Fail("expected --target [ADDR]:PORT=GREETING", arg);
    return false;
  }
  if (assign->second.size() > 64) {
    Fail("greeting longer than 64 bytes", arg);
    return false;
  }
  options.targets.push_back({*address, std::string(assign->first), std::string(assign->second)});
  return true;
}

bool ParseOne(std::string_view flag, std::string_view arg, LoadOptions& o) {
  std::optional<uint64_t> n;
  std::optional<double> d;
  if (flag == "--target") return ParseTarget(arg, o);
  if (flag == "--concurrency" && (n = ParseUint(arg, 1, 1000000))) return o.concurrency = *n, true;
  if (flag == "--rate" && (d = ParseSeconds(arg)) && *d > 0) return o.rate = *d, true;
  if (flag == "--connections" && (n = ParseUint(arg, 1, UINT64_MAX / 2)))
    return o.connections = *n, true;
  if (flag == "--duration" && (d = ParseSeconds(arg)) && *d > 0 && *d <= 86400) {
    return o.duration_s = *d, true;
  }
  if (flag == "--threads" && (n = ParseUint(arg, 1, 64)))
    return o.threads = static_cast<unsigned>(*n), true;
  if (flag == "--timeout-ms" && (n = ParseUint(arg, 1, 600000))) return o.timeout_ms = *n, true;
  if (flag == "--max-in-flight" && (n = ParseUint(arg, 1, 1000000)))
    return o.max_in_flight = *n, true;
  if (flag == "--io" && (arg == "uring" || arg == "epoll")) {
    o.io = arg == "uring" ? IoMode::kUring : IoMode::kEpoll;
    return true;
  }
  Fail("unknown option or bad value", std::string(flag) + " " + std::string(arg));
  return false;
}

}  // namespace

std::optional<LoadOptions> ParseLoadOptions(int argc, char** argv, int* exit_code) {
  LoadOptions options;
  if (!ForEachFlagValue(
          argc, argv, kUsage, exit_code,
          [&](std::string_view flag, std::string_view arg) { return ParseOne(flag, arg, options); },
          Fail)) {
    return std::nullopt;
  }
  if (options.targets.empty()) {
    Fail("no --target given", "");
    return std::nullopt;
  }
  if (options.connections == 0 && options.duration_s == 0) {
    Fail("give --connections or --duration (the run must end by itself)", "");
    return std::nullopt;
  }
  return options;
}

}  // namespace sbx::bench
