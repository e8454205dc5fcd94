// socketbox-relay: takes connections from a socketbox receiving socket, an
// inherited receiving socket or its own TCP listener, and relays each one to
// a TCP or Unix stream target over io_uring (relay/relay_worker.h).
//
// The main thread sets up the source, starts the workers and the metrics
// endpoint, then waits for signals: SIGTERM/SIGINT drain (no new
// connections; open ones get --drain-timeout seconds), SIGUSR1 prints the
// counters. Exit status as the original's: 0 after a drain, 1 for a bad
// command line, 255 when the relay cannot be set up.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/core/metrics_server.h"
#include "engine/core/receiver_socket.h"
#include "engine/core/registration.h"
#include "engine/core/str_cat.h"
#include "engine/sys/fd_table.h"
#include "engine/sys/socket_ops.h"
#include "relay/log.h"
#include "relay/options.h"
#include "relay/relay_stats.h"
#include "relay/relay_worker.h"

namespace sbx::relay {
namespace {

constexpr int kExitBadCommandLine = 1;
constexpr int kExitSetUpFailed = 255;

// Checks (and for a listener, starts listening on) the source.
absl::StatusOr<Source> OpenSource(const RelayOptions& o, std::optional<BoundSocket>* bound) {
  Source source;
  if (o.source == SourceKind::kReceiverPath) {
    auto b = BindReceiverSocket(o.receiver_path, 0660);
    if (!b.ok()) return b.status();
    source.fd = b->fd.get();
    source.receives_fds = true;
    *bound = std::move(*b);
    return source;
  }
  if (o.source == SourceKind::kRegistration) {
    auto channel = RegisterWithServer(o.receiver_path, o.register_group);
    if (!channel.ok()) {
      return absl::ErrnoToStatus(channel.error(),
                                 StrCat("--register ", o.register_group, ":", o.receiver_path));
    }
    source.fd = channel->Release();  // lives as long as the process
    source.receives_fds = true;
    source.stream_channel = true;
    return source;
  }
  source.fd = o.source_fd;
  auto type = GetIntOption(o.source_fd, SOL_SOCKET, SO_TYPE);
  if (!type.ok()) {
    return absl::ErrnoToStatus(type.error(), StrCat("-l ", o.source_fd, ": not a socket"));
  }
  auto domain = GetIntOption(o.source_fd, SOL_SOCKET, SO_DOMAIN);
  if (o.source == SourceKind::kReceiver) {
    if (!domain.ok() || *domain != AF_UNIX) {
      return absl::InvalidArgumentError(StrCat("-l ", o.source_fd, " -e: not a Unix socket"));
    }
    source.receives_fds = true;
    source.stream_channel = *type != SOCK_DGRAM;
    return source;
  }
  if (*type != SOCK_STREAM || !domain.ok() || (*domain != AF_INET && *domain != AF_INET6)) {
    return absl::InvalidArgumentError(
        StrCat("-l ", o.source_fd, ": not a TCP socket (for a receiving socket add -e)"));
  }
  // Accepted connections inherit it: no setsockopt per connection.
  (void)SetIntOption(o.source_fd, IPPROTO_TCP, TCP_NODELAY, 1);
  if (::listen(o.source_fd, o.backlog) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("listen on -l ", o.source_fd));
  }
  return source;
}

int Run(const RelayOptions& options) {
  ::signal(SIGPIPE, SIG_IGN);  // splice to a closed socket raises it
  std::optional<BoundSocket> bound;
  auto source = OpenSource(options, &bound);
  if (!source.ok()) {
    Log("%s", std::string(source.status().message()).c_str());
    return kExitSetUpFailed;
  }
  RelayStats stats(options.workers);
  std::unique_ptr<MetricsServer> metrics;
  if (options.metrics_listen) {
    auto m = MetricsServer::Open(*options.metrics_listen);
    if (!m.ok()) {
      Log("%s", std::string(m.status().message()).c_str());
      return kExitSetUpFailed;
    }
    metrics = std::move(*m);
  }
  // Workers and the metrics thread inherit this mask: only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGUSR1, SIGHUP}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Each relayed connection holds two fds or more (a pipe pair per
  // direction with splice): 1024 is a small budget. And before the
  // workers: a table grown under load stalls them all (fd_table.h).
  RaiseFdLimit();
  if (int err = GrowFdTableForLimit(); err != 0) {
    Log("fd table not grown ahead (%s); it grows as fds are taken", std::strerror(err));
  }
  std::vector<std::unique_ptr<RelayWorker>> workers;
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(static_cast<size_t>(options.workers));
  workers.reserve(static_cast<size_t>(options.workers));
  threads.reserve(static_cast<size_t>(options.workers));
  for (int i = 0; i < options.workers; ++i) {
    workers.push_back(std::make_unique<RelayWorker>(i, options, *source, stats.worker(i)));
  }
  for (int i = 0; i < options.workers; ++i) {
    threads.emplace_back(
        [&, i] { results[static_cast<size_t>(i)] = workers[static_cast<size_t>(i)]->Run(); });
  }
  if (metrics) metrics->Start([&stats] { return stats.PrometheusText(); });

  const bool detailed = options.log_format == LogFormat::kDetailed;
  bool stopping = false;
  while (true) {
    bool all_finished = true;
    bool one_failed = false;
    for (const auto& w : workers) {
      all_finished = all_finished && w->finished();
      one_failed = one_failed || w->failed();
    }
    if (all_finished) break;
    const timespec poll_interval{0, 200'000'000};
    // A failed worker stops the relay as SIGTERM does, without waiting.
    const int sig = one_failed && !stopping ? 0 : sigtimedwait(&signals, nullptr, &poll_interval);
    if (sig == SIGUSR1) {
      Log("%s", stats.Summary().c_str());
    } else if ((sig == SIGTERM || sig == SIGINT || one_failed) && !stopping) {
      stopping = true;
      if (detailed)
        Log("draining: no new connections; open ones get %u s", options.drain_timeout_s);
      // Senders see the path gone at once instead of queueing into a socket
      // nobody reads any more.
      if (bound) RemoveIfStillOurs(*bound);
      for (auto& w : workers) w->RequestStop();
    }
  }
  for (auto& t : threads) t.join();
  if (metrics) metrics->Stop();
  if (bound) RemoveIfStillOurs(*bound);
  if (detailed) Log("%s", stats.Summary().c_str());
  for (const auto& r : results) {
    if (!r.ok()) {  // a worker's ring could not be set up, or failed
      Log("%s", std::string(r.message()).c_str());
      return kExitSetUpFailed;
    }
  }
  return 0;
}

}  // namespace
}  // namespace sbx::relay

int main(int argc, char** argv) {
  sbx::SetLogName("socketbox-relay");  // whatever name it was started by
  auto options = sbx::relay::ParseRelayOptions(argc, argv);
  if (!options.ok()) {
    if (absl::IsCancelled(options.status())) {  // --help
      std::printf("%s\n", std::string(options.status().message()).c_str());
      return 0;
    }
    std::fprintf(stderr, "socketbox-relay: %s\n", std::string(options.status().message()).c_str());
    return sbx::relay::kExitBadCommandLine;
  }
  for (const std::string& warning : options->warnings) {
    sbx::Log("warning: %s", warning.c_str());
  }
  return sbx::relay::Run(*options);
}
