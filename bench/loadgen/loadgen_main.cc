// bench/load_generator: runs the threads, merges their statistics, and prints
// one JSON object on stdout. Exit 0 when the run happened (the harness judges
// the counts), 1 when set-up failed, 2 on bad usage.
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "bench/loadgen/loadgen_core.h"
#include "bench/loadgen/loadgen_options.h"
#include "engine/sys/fd_table.h"

namespace sbx::bench {
namespace {

std::string JsonString(const std::string& raw) {
  std::string out = "\"";
  for (unsigned char c : raw) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\u%04x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

double Seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

void PrintReport(const LoadOptions& options, const ThreadStats& total, uint64_t start_ns,
                 double elapsed_s) {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const uint64_t ok = total.outcomes[static_cast<int>(Outcome::kOk)];
  const Histogram& h = total.latency;
  uint64_t finished = 0;
  for (uint64_t n : total.outcomes) finished += n;
  std::string out = "{";
  char buf[512];
  std::snprintf(
      buf, sizeof(buf),
      "\"io\":\"%s\",\"threads\":%u,\"mode\":\"%s\",\"concurrency\":%llu,\"rate_target\":%.0f,"
      "\"elapsed_s\":%.4f,\"started\":%llu,\"finished\":%llu,\"completed\":%llu,"
      "\"conn_per_s\":%.1f,",
      options.io == IoMode::kUring ? "uring" : "epoll", options.threads,
      options.rate > 0 ? "open" : "closed", static_cast<unsigned long long>(options.concurrency),
      options.rate, elapsed_s, static_cast<unsigned long long>(total.started),
      static_cast<unsigned long long>(finished), static_cast<unsigned long long>(ok),
      elapsed_s > 0 ? static_cast<double>(ok) / elapsed_s : 0.0);
  out += buf;
  out += "\"errors\":{";
  for (int i = 1; i < static_cast<int>(Outcome::kCount); ++i) {
    std::snprintf(buf, sizeof(buf), "%s\"%s\":%llu", i > 1 ? "," : "",
                  OutcomeName(static_cast<Outcome>(i)),
                  static_cast<unsigned long long>(total.outcomes[static_cast<size_t>(i)]));
    out += buf;
  }
  out += "},\"first_errno\":{";
  bool first = true;
  for (int i = 1; i < static_cast<int>(Outcome::kCount); ++i) {
    if (total.first_errno[i] == 0) continue;
    std::snprintf(buf, sizeof(buf), "%s\"%s\":%llu", first ? "" : ",",
                  OutcomeName(static_cast<Outcome>(i)),
                  static_cast<unsigned long long>(total.first_errno[i]));
    out += buf;
    first = false;
  }
  out += "},\"targets\":[";
  for (size_t i = 0; i < options.targets.size(); ++i) {
    const TargetStats& t = total.targets[i];
    std::snprintf(buf, sizeof(buf),
                  "%s{\"target\":%s,\"expected\":%s,\"ok\":%llu,\"wrong\":%llu,\"failed\":%llu",
                  i ? "," : "", JsonString(options.targets[i].text).c_str(),
                  JsonString(options.targets[i].greeting).c_str(),
                  static_cast<unsigned long long>(t.ok), static_cast<unsigned long long>(t.wrong),
                  static_cast<unsigned long long>(t.failed));
    out += buf;
    if (!t.wrong_example.empty()) out += ",\"wrong_example\":" + JsonString(t.wrong_example);
    out += "}";
  }
  double user = Seconds(usage.ru_utime);
  double sys = Seconds(usage.ru_stime);
  std::snprintf(
      buf, sizeof(buf),
      "],\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,"
      "\"max\":%.1f,\"mean\":%.1f},\"cpu_s\":{\"user\":%.4f,\"sys\":%.4f},"
      "\"cpu_us_per_conn\":%.3f,\"cdf\":",
      static_cast<double>(h.Quantile(0.50)) / 1e3, static_cast<double>(h.Quantile(0.90)) / 1e3,
      static_cast<double>(h.Quantile(0.99)) / 1e3, static_cast<double>(h.Quantile(0.999)) / 1e3,
      static_cast<double>(h.max_ns()) / 1e3, h.mean_ns() / 1e3, user, sys,
      finished ? (user + sys) * 1e6 / static_cast<double>(finished) : 0.0);
  out += buf;
  out += h.CdfJson() + ",\"buckets\":" + h.BucketsJson();
  // The run's start on CLOCK_MONOTONIC, so that a trace of the same
  // moments (perf record -k mono) can be laid beside the slowest.
  out += ",\"start_ns\":" + std::to_string(start_ns);
  out += ",\"slowest\":" + total.slowest.Json(start_ns) + "}\n";
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
}

int Main(int argc, char** argv) {
  int exit_code = 0;
  auto options = ParseLoadOptions(argc, argv, &exit_code);
  if (!options) return exit_code;
  ::signal(SIGPIPE, SIG_IGN);
  // A burst of 10,000 simultaneous connections needs more than the usual
  // 1024 fds; and a table grown under load would stall every thread of
  // the tool for a grace period, measured as the server's (fd_table.h).
  RaiseFdLimit();
  GrowFdTableForLimit();
  std::vector<ThreadStats> stats(options->threads);
  std::vector<int> results(options->threads, 0);
  std::vector<std::thread> threads;
  uint64_t start = NowNs();
  for (unsigned t = 0; t < options->threads; ++t) {
    stats[t].targets.resize(options->targets.size());
    threads.emplace_back([&, t] {
      results[t] = options->io == IoMode::kUring ? RunUringThread(*options, t, stats[t])
                                                 : RunEpollThread(*options, t, stats[t]);
    });
  }
  for (auto& thread : threads) thread.join();
  double elapsed_s = static_cast<double>(NowNs() - start) / 1e9;
  ThreadStats total;
  total.targets.resize(options->targets.size());
  int status = 0;
  for (unsigned t = 0; t < options->threads; ++t) {
    total.Merge(stats[t]);
    if (results[t] != 0) status = 1;
  }
  PrintReport(*options, total, start, elapsed_s);
  return status;
}

}  // namespace
}  // namespace sbx::bench

int main(int argc, char** argv) { return sbx::bench::Main(argc, argv); }
