#include "engine/daemon/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/core/config_loader.h"
#include "engine/core/registration.h"
#include "engine/core/str_cat.h"
#include "engine/daemon/control.h"
#include "engine/daemon/listeners.h"
#include "engine/daemon/metrics_server.h"
#include "engine/daemon/metrics_text.h"
#include "engine/daemon/privileges.h"
#include "engine/daemon/stats.h"
#include "engine/daemon/sync_worker.h"
#include "engine/daemon/systemd.h"
#include "engine/daemon/uring_worker.h"
#include "engine/sys/kernel_probe.h"

namespace sbx {
namespace {

void Log(const std::string& line) { std::fprintf(stderr, "socketbox: %s\n", line.c_str()); }

int Fail(const absl::Status& status) {
  Log(std::string(status.message()));
  return 1;
}

// The configuration file stays reachable for SIGHUP after -d (which changes
// to /) and -x (chroot): its directory is held open and the file re-opened
// relative to it.
class ConfigSource {
 public:
  absl::Status Open(const std::string& path) {
    path_ = path;
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    name_ = slash == std::string::npos ? path : path.substr(slash + 1);
    dir_.Reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir_) return absl::ErrnoToStatus(errno, StrCat("open directory of ", path));
    return absl::OkStatus();
  }
  absl::StatusOr<LoadedConfig> Load() const {
    UniqueFd fd(::openat(dir_.get(), name_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return absl::ErrnoToStatus(errno, StrCat("open ", path_));
    return LoadConfigFd(fd.get(), path_);
  }

 private:
  std::string path_, name_;
  UniqueFd dir_;
};

void PrintWarnings(const LoadedConfig& config) {
  for (const Diagnostic& d : config.warnings) std::fprintf(stderr, "%s\n", d.ToString().c_str());
}

int ExecProgram(const Options& o, int fd) {
  ::fcntl(fd, F_SETFD, 0);  // the program inherits it
  ::setenv("SKBOX_LISTEN_FD", std::to_string(fd).c_str(), 1);
  std::vector<char*> argv;
  for (const std::string& a : o.exec_argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  Log(StrCat("exec ", o.exec_argv[0], ": ", std::strerror(errno)));
  return 127;
}

int WorkerCount(const Options& o) {
  if (o.registration) return 1;  // one connection to read from
  if (o.threads > 0) return o.threads;
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(std::min<long>(n, 64)) : 1;
}

}  // namespace

int RunDaemon(const Options& o, std::optional<HandoverReceived> upgrade) {
  const bool upgrading = upgrade.has_value();
  std::optional<HandoverReceived> taken = std::move(upgrade);
  const std::string start_dir = CurrentDirectory();
  // 1. The configuration, read and checked before any socket exists: a bad
  //    file must not leave a socket bound.
  ConfigSource source;
  std::shared_ptr<const RouteTable> table;
  const bool needs_config = !o.has_forced_action() && !o.exec_mode;
  if (needs_config) {
    if (absl::Status s = source.Open(o.config_path); !s.ok()) return Fail(s);
    auto loaded = source.Load();
    if (!loaded.ok()) return Fail(loaded.status());
    PrintWarnings(*loaded);
    table = loaded->table;
  }
  if (o.forced_fd && ::fcntl(*o.forced_fd, F_GETFD) < 0) {
    return Fail(absl::InvalidArgumentError(StrCat("-i ", *o.forced_fd, ": not an open file descriptor")));
  }

  // 2. Sockets: registration, inherited, or bound here.
  const int workers = o.exec_mode ? 0 : WorkerCount(o);
  UniqueFd registration;
  ListenerSet listeners;
  if (o.registration) {
    auto fd = RegisterWithServer(o.registration->path, o.registration->group);
    if (!fd.ok()) {
      return Fail(absl::ErrnoToStatus(fd.error(), StrCat("register as group ", o.registration->group,
                                                         " at ", o.registration->path)));
    }
    registration = std::move(*fd);
  } else if (o.handover_path && !taken) {
    auto requested = RequestHandover(*o.handover_path);  // a predecessor's, if one serves the path
    if (!requested.ok()) return Fail(requested.status());
    taken = std::move(*requested);
  }
  if (taken) {
    Log(StrCat("taking ", taken->listeners.size(), " listener(s) from pid ", taken->old_pid));
    listeners = AdoptListeners(std::move(taken->listeners), workers, o);
    taken->log.Reset();  // the old daemon's stderr: --upgrade has made it ours already
  } else if (!o.registration) {
    auto opened = OpenListeners(o, workers, table.get());
    if (!opened.ok()) return Fail(opened.status());
    listeners = std::move(*opened);
  }

  // The metrics listener too is bound while privileged.
  std::unique_ptr<MetricsServer> metrics;
  if (o.metrics_listen && !o.exec_mode) {
    auto opened = taken && taken->metrics ? MetricsServer::Adopt(std::move(taken->metrics))
                                          : MetricsServer::Open(*o.metrics_listen);
    if (!opened.ok()) return Fail(opened.status());
    metrics = std::move(*opened);
  }
  if (taken) taken->metrics.Reset();  // the predecessor's, when this daemon serves no metrics

  // 3. listen() before daemon(), unlike the original: when `socketbox -d`
  //    returns, connections are queued rather than refused, and a listen
  //    error reaches the parent's exit status instead of a detached child.
  if (!o.registration && !o.exec_mode) {
    if (absl::Status s = StartListening(listeners, o.backlog); !s.ok()) return Fail(s);
  }

  // 4-5. Daemonize, chroot, drop privileges; -e execs here.
  if (o.daemonize && ::daemon(0, 1) != 0) return Fail(absl::ErrnoToStatus(errno, "daemon"));
  // The handover socket: after daemon() (its SO_PEERCRED names this
  // process), before the privilege drop (its directory is root's).
  std::unique_ptr<HandoverServer> handover;
  if (o.handover_path) {
    auto opened = HandoverServer::Open(*o.handover_path);
    if (!opened.ok()) return Fail(opened.status());
    handover = std::move(*opened);
  }
  if (absl::Status s = ChrootAndDropPrivileges(o); !s.ok()) return Fail(s);
  if (o.exec_mode) return ExecProgram(o, listeners.exec_fd);
  if (absl::Status s = ForbidNewPrivileges(); !s.ok()) return Fail(s);

  // A predecessor stops its workers before ours start (handover.h says why).
  if (taken) {
    absl::Status s = CompleteHandover(&*taken);
    Log(s.ok() ? StrCat("took over from pid ", taken->old_pid) : std::string(s.message()));
  }

  // 6. Workers.
  IoMode io = o.io;
  if (io == IoMode::kUring) {
    const KernelFeatures features = ProbeKernelFeatures();
    Log(features.Summary());
    if (!features.FastPathUsable()) {
      Log("io_uring fast path unavailable on this kernel; using --io=sync");
      io = IoMode::kSync;
    }
  }
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGHUP, SIGINT, SIGTERM, SIGUSR1, kWorkerExitSignal}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  Control control(workers);
  StatsRegistry stats(workers);
  control.Publish(table);
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    WorkerSetup setup;
    setup.index = w;
    if (!o.registration) setup.listeners = listeners.per_worker[w];
    setup.registration_fd = registration.get();
    if (io == IoMode::kUring) {
      // The ring is made on the thread that uses it: SINGLE_ISSUER rings
      // accept submissions only from their creator.
      threads.emplace_back([&o, &control, &stats, setup]() mutable {
        WorkerSetup copy = setup;
        UringWorker worker(o, std::move(setup), &control, &stats);
        if (absl::Status s = worker.Init(); !s.ok()) {
          Log(StrCat("worker ", copy.index, ": ", s.message(), "; this worker uses --io=sync"));
          for (const ListenerInfo& l : copy.listeners) {
            ::fcntl(l.fd, F_SETFL, ::fcntl(l.fd, F_GETFL) | O_NONBLOCK);
          }
          SyncWorker(o, std::move(copy), &control, &stats).Run();
          return;
        }
        worker.Run();
      });
    } else {
      for (const ListenerInfo& l : setup.listeners) {
        ::fcntl(l.fd, F_SETFL, ::fcntl(l.fd, F_GETFL) | O_NONBLOCK);
      }
      threads.emplace_back([&o, &control, &stats, setup]() mutable {
        SyncWorker(o, std::move(setup), &control, &stats).Run();
      });
    }
  }
  if (metrics) metrics->Start([&stats] { return PrometheusText(stats); });
  std::string where;
  for (const std::string& d : listeners.descriptions) where += (where.empty() ? "" : ", ") + d;
  if (o.registration) where = StrCat("registration group ", o.registration->group, " at ", o.registration->path);
  if (metrics) where += StrCat("; metrics at http://", FormatHostPort(*o.metrics_listen), "/metrics");
  Log(StrCat("ready: ", workers, " worker(s), io=", io == IoMode::kUring ? "uring" : "sync",
             ", accepting on ", where));
  NotifySystemd("READY=1");
  if (handover) {
    HandoverOffer offer{listeners.all_fds, metrics ? metrics->listener_fd() : -1, start_dir,
                        upgrading ? taken->argv : std::vector<std::string>{}};
    // A successor took over: stop as on SIGTERM (the main loop below).
    handover->Start(std::move(offer), [](pid_t) { ::kill(::getpid(), SIGTERM); });
  }

  // 7. The main thread: signals and periodic stats.
  int status = 0;
  while (true) {
    timespec wait{o.stats_interval_s > 0 ? o.stats_interval_s : 3600, 0};
    const int sig = ::sigtimedwait(&signals, nullptr, &wait);
    if (sig < 0) {
      if (errno == EAGAIN && o.stats_interval_s > 0) std::fputs(stats.Format().c_str(), stderr);
      continue;
    }
    if (sig == SIGUSR1) {
      std::fputs(stats.Format().c_str(), stderr);
    } else if (sig == SIGHUP) {
      if (!needs_config) continue;
      NotifySystemd("RELOADING=1");
      auto loaded = source.Load();
      if (loaded.ok()) {
        PrintWarnings(*loaded);
        control.Publish(loaded->table);
        Bump(stats.reloads);
        Log(StrCat("reloaded ", o.config_path));
      } else {
        Bump(stats.reload_failures);
        Log(StrCat("reload of ", o.config_path, " failed; keeping the running configuration:\n",
                   loaded.status().message()));
      }
      NotifySystemd("READY=1");
    } else {
      if (sig == kWorkerExitSignal) status = std::max(control.exit_status(), 0);
      break;
    }
  }
  NotifySystemd("STOPPING=1");
  if (handover) handover->Stop();
  control.RequestStop();
  for (std::thread& t : threads) t.join();
  if (handover) handover->Finish();
  if (metrics) metrics->Stop();
  std::fputs(stats.Format().c_str(), stderr);
  Log(StrCat("stopped (exit ", status, ")"));
  return status;
}

}  // namespace sbx
