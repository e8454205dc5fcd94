#include "engine/daemon/daemon.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/core/config_loader.h"
#include "engine/core/registration.h"
#include "engine/core/str_cat.h"
#include "engine/daemon/config_source.h"
#include "engine/daemon/control.h"
#include "engine/daemon/fd_checks.h"
#include "engine/daemon/fd_reserve.h"
#include "engine/daemon/handover.h"
#include "engine/daemon/listeners.h"
#include "engine/daemon/metrics_server.h"
#include "engine/daemon/metrics_text.h"
#include "engine/daemon/privileges.h"
#include "engine/daemon/stats.h"
#include "engine/daemon/sync_worker.h"
#include "engine/daemon/systemd.h"
#include "engine/daemon/uring_worker.h"
#include "engine/kernel/listener_registry.h"
#include "engine/kernel/steering_program.h"
#include "engine/sys/kernel_probe.h"
#include "engine/sys/open_fds.h"

namespace sbx {
namespace {

void Log(const std::string& line) { std::fprintf(stderr, "socketbox: %s\n", line.c_str()); }

int Fail(const absl::Status& status) {
  Log(std::string(status.message()));
  return 1;
}

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

// One worker per two CPUs by default: a worker's own cost per connection is
// a few microseconds, while the kernel's TCP work (softirq, on the CPUs the
// packets arrive on) and the backends need the rest. More workers than that
// only share the same CPUs, make smaller batches and wake each other's cores:
// capped at one CPU's worth, one worker delivered 1.3x the connections per
// CPU-second of two on this 2-CPU machine (docs/scaling.md).
int WorkerCount(const Options& o) {
  if (o.registration) return 1;  // one connection to read from
  if (o.threads > 0) return o.threads;
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 1 ? static_cast<int>(std::min<long>(n / 2, 64)) : 1;
}

// The fd limit under which --kernel-dispatch auto stays off.
constexpr uint64_t kKernelDispatchMinFds = 1024;

// The daemon's three phases, each one method: StartUp (configuration,
// sockets, daemonizing and privileges, in the original's order, fixing its
// faults), StartWorkers, and SignalLoop (until SIGTERM/SIGINT or a worker's
// request to end), then Shutdown.
class Daemon {
 public:
  Daemon(const Options& o, std::optional<HandoverReceived> upgrade)
      : fd_limit_(RaiseFdLimit()),
        o_(o),
        upgrading_(upgrade.has_value()),
        taken_(std::move(upgrade)),
        start_dir_(CurrentDirectory()),
        needs_config_(!o.has_forced_action() && !o.exec_mode),
        workers_(o.exec_mode ? 0 : WorkerCount(o)),
        inherited_fds_(OpenFds()),
        control_(workers_),
        stats_(workers_) {}

  // Steps 1-5. An exit status when the process ends here: 1 for a start-up
  // error, or -e's exec failure; nullopt when the workers are to start.
  std::optional<int> StartUp();
  void StartWorkers();
  // Returns the exit status: 0 on SIGTERM/SIGINT, else a worker's request.
  int SignalLoop();
  void Shutdown(int status);

 private:
  absl::Status LoadAndCheck(std::shared_ptr<const RouteTable>* table) const;
  // --kernel-dispatch: load and attach the steering program, bind the
  // listener socket, publish the table. An error only with `on`; with
  // `auto` the reason goes into the ready line.
  absl::Status SetUpKernelDispatch();
  absl::Status StartKernelDispatch();
  void Reload();
  std::string Where() const;

  const FdLimit fd_limit_;  // raised to the hard limit first of all
  const Options& o_;
  // --upgrade / --handover: what a predecessor handed over (handover.h), and
  // where this daemon was started (for its own successor).
  const bool upgrading_;
  std::optional<HandoverReceived> taken_;
  const std::string start_dir_;
  std::unique_ptr<HandoverServer> handover_;
  const bool needs_config_;
  const int workers_;
  // Open when the process started, listed before the daemon opens anything
  // (Control's eventfds included): all that a configuration may name
  // (jump-fd:N), at start-up or after a reload.
  const std::vector<int> inherited_fds_;
  ConfigSource source_;
  std::shared_ptr<const RouteTable> table_;
  UniqueFd registration_;
  ListenerSet listeners_;
  std::unique_ptr<MetricsServer> metrics_;
  std::unique_ptr<SteeringProgram> steering_;
  // Before the registry: its thread hands answers to the relay until it stops.
  std::unique_ptr<ReplyRelay> relay_;
  std::unique_ptr<ListenerRegistry> registry_;
  std::string kernel_dispatch_;  // "on (...)" or "off (why)", for the ready line
  IoMode io_ = IoMode::kUring;
  sigset_t signals_{};
  Control control_;
  StatsRegistry stats_;
  std::unique_ptr<FdReserve> fd_reserve_;  // shared by the workers
  std::vector<std::thread> threads_;
};

// The configuration, parsed and with every fd it names checked.
absl::Status Daemon::LoadAndCheck(std::shared_ptr<const RouteTable>* table) const {
  auto loaded = source_.Load();
  if (!loaded.ok()) return loaded.status();
  if (absl::Status s = CheckNamedFds(*loaded->table, o_.config_path, &inherited_fds_); !s.ok())
    return s;
  PrintWarnings(*loaded);
  *table = loaded->table;
  return absl::OkStatus();
}

std::optional<int> Daemon::StartUp() {
  // 1. The configuration and the fds it or -i names, read and checked
  //    before any socket exists: a bad file must not leave a socket bound.
  if (needs_config_) {
    if (absl::Status s = source_.Open(o_.config_path); !s.ok()) return Fail(s);
    if (absl::Status s = LoadAndCheck(&table_); !s.ok()) return Fail(s);
  }
  if (o_.forced_fd) {
    if (absl::Status s = CheckForcedFd(*o_.forced_fd, &inherited_fds_); !s.ok()) return Fail(s);
  }

  // 2. Sockets: registration, inherited, or bound here.
  if (o_.registration) {
    auto fd = RegisterWithServer(o_.registration->path, o_.registration->group);
    if (!fd.ok()) {
      return Fail(absl::ErrnoToStatus(
          fd.error(),
          StrCat("register as group ", o_.registration->group, " at ", o_.registration->path)));
    }
    registration_ = std::move(*fd);
  } else if (o_.handover_path && !taken_) {
    auto requested = RequestHandover(*o_.handover_path);  // a predecessor's, if one serves the path
    if (!requested.ok()) return Fail(requested.status());
    taken_ = std::move(*requested);
  }
  if (taken_) {
    Log(StrCat("taking ", taken_->listeners.size(), " listener(s) from pid ", taken_->old_pid));
    listeners_ = AdoptListeners(std::move(taken_->listeners), workers_, o_);
    taken_->log.Reset();  // the old daemon's stderr: --upgrade has made it ours already
  } else if (!o_.registration) {
    auto opened = OpenListeners(o_, workers_, table_.get());
    if (!opened.ok()) return Fail(opened.status());
    listeners_ = std::move(*opened);
  }

  // The metrics listener too is bound while privileged.
  if (o_.metrics_listen && !o_.exec_mode) {
    auto opened = taken_ && taken_->metrics ? MetricsServer::Adopt(std::move(taken_->metrics))
                                            : MetricsServer::Open(*o_.metrics_listen);
    if (!opened.ok()) return Fail(opened.status());
    metrics_ = std::move(*opened);
  }
  if (taken_) taken_->metrics.Reset();  // the predecessor's, when this daemon serves no metrics

  // 3. listen() before daemon(), unlike the original: when `socketbox -d`
  //    returns, connections are queued rather than refused, and a listen
  //    error reaches the parent's exit status instead of a detached child.
  if (!o_.registration && !o_.exec_mode) {
    if (absl::Status s = StartListening(listeners_, o_.backlog); !s.ok()) return Fail(s);
  }

  // Kernel dispatch: loaded and attached while privileged (CAP_BPF,
  // CAP_NET_ADMIN); the maps are written through fds that need none.
  if (absl::Status s = SetUpKernelDispatch(); !s.ok()) return Fail(s);

  // 4-5. Daemonize, chroot, drop privileges; -e execs here.
  if (o_.daemonize && ::daemon(0, 1) != 0) return Fail(absl::ErrnoToStatus(errno, "daemon"));
  // The handover socket: after daemon() (its SO_PEERCRED names this
  // process), before the privilege drop (its directory is root's).
  if (o_.handover_path) {
    auto opened = HandoverServer::Open(*o_.handover_path);
    if (!opened.ok()) return Fail(opened.status());
    handover_ = std::move(*opened);
  }
  if (absl::Status s = ChrootAndDropPrivileges(o_); !s.ok()) return Fail(s);
  if (o_.exec_mode) return ExecProgram(o_, listeners_.exec_fd);
  if (absl::Status s = ForbidNewPrivileges(); !s.ok()) return Fail(s);
  // A predecessor stops its workers before ours start (handover.h says why).
  if (taken_) {
    absl::Status s = CompleteHandover(&*taken_);
    Log(s.ok() ? StrCat("took over from pid ", taken_->old_pid) : std::string(s.message()));
  }
  return std::nullopt;
}

absl::Status Daemon::SetUpKernelDispatch() {
  const bool required = o_.kernel_dispatch == KernelDispatchMode::kOn;
  if (o_.kernel_dispatch == KernelDispatchMode::kOff) {
    kernel_dispatch_ = "off";
    return absl::OkStatus();
  }
  if (!table_ || o_.registration || o_.exec_mode) {
    if (required) {
      return absl::InvalidArgumentError(
          "--kernel-dispatch on needs a configuration file (not -S, -i, -P or -e)");
    }
    kernel_dispatch_ = "off (no configuration file)";
    return absl::OkStatus();
  }
  // The program's maps, its link, the listener socket and each listener
  // hold fds for the daemon's life: under a tiny fd limit `auto` leaves
  // them to the connections (tests/engine/pressure_test.py runs at 40).
  if (!required && fd_limit_.now < kKernelDispatchMinFds) {
    kernel_dispatch_ = StrCat("off (fd limit ", fd_limit_.now, " is below ", kKernelDispatchMinFds,
                              "; --kernel-dispatch on uses it anyway)");
    return absl::OkStatus();
  }
  absl::Status s = StartKernelDispatch();
  if (s.ok()) return s;
  registry_.reset();
  steering_.reset();
  if (required) return absl::Status(s.code(), StrCat("--kernel-dispatch on: ", s.message()));
  kernel_dispatch_ = StrCat("off (", s.message(), ")");
  return absl::OkStatus();
}

absl::Status Daemon::StartKernelDispatch() {
  auto loaded = SteeringProgram::Load();
  if (!loaded.ok()) return loaded.status();
  steering_ = std::move(*loaded);
  // The connections the engine would accept, and only those, are steered.
  for (int fd : listeners_.all_fds) {
    sockaddr_storage address{};
    socklen_t len = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &len) != 0) {
      return absl::ErrnoToStatus(errno, "getsockname of a listener");
    }
    int v6only = 0;
    socklen_t v6len = sizeof v6only;
    if (address.ss_family == AF_INET6) {
      ::getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &v6len);
    }
    if (absl::Status s = steering_->AddListenAddress(address, v6only == 0); !s.ok()) return s;
  }
  ListenerRegistryConfig config;
  config.socket_path = o_.listener_socket;
  config.dispatch_timeout_ms = o_.dispatch_timeout_ms;
  config.backlog = o_.backlog;
  config.substitute = o_.substitute;
  auto opened =
      taken_ && taken_->kernel
          ? ListenerRegistry::Adopt(steering_.get(), std::move(config), std::move(*taken_->kernel))
          : ListenerRegistry::Open(steering_.get(), std::move(config));
  if (!opened.ok()) return opened.status();
  registry_ = std::move(*opened);
  auto notes = registry_->Publish(table_);
  if (!notes.ok()) return notes.status();
  for (const std::string& note : *notes) Log(note);
  if (absl::Status s = steering_->Attach(); !s.ok()) return s;
  kernel_dispatch_ = StrCat("on (listeners at ", o_.listener_socket, ")");
  return absl::OkStatus();
}

// 6. The I/O mode (the probe decides once), the signal mask every thread
//    inherits, the workers and the metrics thread; then "ready".
void Daemon::StartWorkers() {
  io_ = o_.io;
  if (io_ == IoMode::kUring) {
    const KernelFeatures features = ProbeKernelFeatures();
    Log(features.Summary());
    if (!features.FastPathUsable()) {
      Log("io_uring fast path unavailable on this kernel; using --io=sync");
      io_ = IoMode::kSync;
    }
  }
  sigemptyset(&signals_);
  for (int s : {SIGHUP, SIGINT, SIGTERM, SIGUSR1, kWorkerExitSignal}) sigaddset(&signals_, s);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  fd_reserve_ = std::make_unique<FdReserve>(ReserveFor(fd_limit_.now));
  control_.Publish(table_);
  if (registry_ && io_ == IoMode::kUring) {
    // Receivers in other network namespaces answer over their channels.
    std::vector<UniqueFd> wake;
    for (int w = 0; w < workers_; ++w) {
      wake.emplace_back(::fcntl(control_.wake_fd(w), F_DUPFD_CLOEXEC, 0));
    }
    relay_ = std::make_unique<ReplyRelay>(std::move(wake));
    registry_->SetRelay(relay_.get());
  }
  const Options& o = o_;
  Control& control = control_;
  StatsRegistry& stats = stats_;
  for (int w = 0; w < workers_; ++w) {
    WorkerSetup setup;
    setup.index = w;
    setup.workers = workers_;
    if (!o.registration) setup.listeners = listeners_.per_worker[w];
    setup.registration_fd = registration_.get();
    setup.fd_reserve = fd_reserve_.get();
    setup.relay = relay_.get();
    if (io_ == IoMode::kUring) {
      // The ring is made on the thread that uses it: SINGLE_ISSUER rings
      // accept submissions only from their creator.
      threads_.emplace_back([&o, &control, &stats, setup]() mutable {
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
      threads_.emplace_back([&o, &control, &stats, setup]() mutable {
        SyncWorker(o, std::move(setup), &control, &stats).Run();
      });
    }
  }
  if (registry_) {
    ListenerRegistry* registry = registry_.get();
    stats_.SetKernelCounts([registry] { return registry->Counts(); });
    registry_->Start();
  }
  if (metrics_) metrics_->Start([&stats] { return PrometheusText(stats); });
  Log(StrCat(
      "ready: ", workers_, " worker(s), io=", io_ == IoMode::kUring ? "uring" : "sync",
      ", accepting on ", Where(), "; fds: limit ", fd_limit_.now,
      fd_limit_.now != fd_limit_.before ? StrCat(" (raised from ", fd_limit_.before, ")") : "",
      ", ", fd_reserve_->held(), " in reserve; kernel dispatch ", kernel_dispatch_));
  NotifySystemd("READY=1");
  if (handover_) {
    HandoverOffer offer{listeners_.all_fds, metrics_ ? metrics_->listener_fd() : -1, start_dir_,
                        upgrading_ ? taken_->argv : std::vector<std::string>{}, registry_.get()};
    // A successor took over: stop as on SIGTERM (the signal loop).
    handover_->Start(std::move(offer), [](pid_t) { ::kill(::getpid(), SIGTERM); });
  }
}

std::string Daemon::Where() const {
  std::string where;
  for (const std::string& d : listeners_.descriptions) where += (where.empty() ? "" : ", ") + d;
  if (o_.registration) {
    where = StrCat("registration group ", o_.registration->group, " at ", o_.registration->path);
  }
  if (metrics_)
    where += StrCat("; metrics at http://", FormatHostPort(*o_.metrics_listen), "/metrics");
  return where;
}

// 7. The main thread: signals and periodic stats.
int Daemon::SignalLoop() {
  while (true) {
    timespec wait{o_.stats_interval_s > 0 ? o_.stats_interval_s : 3600, 0};
    const int sig = ::sigtimedwait(&signals_, nullptr, &wait);
    if (sig < 0) {
      if (errno == EAGAIN && o_.stats_interval_s > 0) std::fputs(stats_.Format().c_str(), stderr);
      continue;
    }
    if (sig == SIGUSR1) {
      std::fputs(stats_.Format().c_str(), stderr);
    } else if (sig == SIGHUP) {
      if (needs_config_) Reload();
    } else {
      return sig == kWorkerExitSignal ? std::max(control_.exit_status(), 0) : 0;
    }
  }
}

// A new table replaces the running one only when it parses and every fd it
// names passes the check; otherwise the running one stays and the log says why.
void Daemon::Reload() {
  NotifySystemd("RELOADING=1");
  std::shared_ptr<const RouteTable> table;
  if (absl::Status s = LoadAndCheck(&table); s.ok()) {
    if (registry_) {
      auto notes = registry_->Publish(table);
      if (!notes.ok()) {
        Log(StrCat("kernel dispatch: ", notes.status().message()));
      } else {
        for (const std::string& note : *notes) Log(note);
      }
    }
    control_.Publish(std::move(table));
    Bump(stats_.reloads);
    Log(StrCat("reloaded ", o_.config_path));
  } else {
    Bump(stats_.reload_failures);
    Log(StrCat("reload of ", o_.config_path, " failed; keeping the running configuration:\n",
               s.message()));
  }
  NotifySystemd("READY=1");
}

void Daemon::Shutdown(int status) {
  NotifySystemd("STOPPING=1");
  if (handover_) handover_->Stop();
  control_.RequestStop();
  for (std::thread& t : threads_) t.join();
  if (registry_) {
    registry_->Stop();
    registry_->Drain();  // what listeners nobody serves hold goes on, as the workers' drain did
  }
  if (handover_) handover_->Finish();
  if (metrics_) metrics_->Stop();
  std::fputs(stats_.Format().c_str(), stderr);
  Log(StrCat("stopped (exit ", status, ")"));
}

}  // namespace

int RunDaemon(const Options& o, std::optional<HandoverReceived> upgrade) {
  Daemon daemon(o, std::move(upgrade));
  if (std::optional<int> early_exit = daemon.StartUp()) return *early_exit;
  daemon.StartWorkers();
  const int status = daemon.SignalLoop();
  daemon.Shutdown(status);
  return status;
}

}  // namespace sbx
