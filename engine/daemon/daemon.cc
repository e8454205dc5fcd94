#include "engine/daemon/daemon.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/core/config_loader.h"
#include "engine/core/metrics_server.h"
#include "engine/core/registration.h"
#include "engine/core/str_cat.h"
#include "engine/daemon/config_source.h"
#include "engine/daemon/fd_checks.h"
#include "engine/daemon/handover.h"
#include "engine/daemon/listeners.h"
#include "engine/daemon/metrics_text.h"
#include "engine/daemon/privileges.h"
#include "engine/daemon/systemd.h"
#include "engine/dispatch/control.h"
#include "engine/dispatch/fd_reserve.h"
#include "engine/dispatch/stats.h"
#include "engine/dispatch/sync_worker.h"
#include "engine/dispatch/uring_worker.h"
#include "engine/kernel/listener_registry.h"
#include "engine/kernel/steering_program.h"
#include "engine/sys/fd_channel_check.h"
#include "engine/sys/fd_table.h"
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
// A handover's old daemon tells its successor it stopped accepting once
// every worker has reaped its accepts: at most this long.
constexpr int kStopAcceptingTimeoutS = 5;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The fds the daemon may treat as inherited (jump-fd:N, -i N): those open
// now, less what --upgrade received from the old daemon (its channel,
// listeners, log...), which are the daemon's own.
std::vector<int> InheritedFds(const std::optional<HandoverReceived>& taken) {
  std::vector<int> fds = OpenFds();
  if (!taken) return fds;
  std::vector<int> own = HandoverFds(*taken);
  std::sort(own.begin(), own.end());
  std::erase_if(fds, [&own](int fd) { return std::binary_search(own.begin(), own.end(), fd); });
  return fds;
}

std::optional<SocketAddress> LocalAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

bool IsAddressInUse(const absl::Status& s) {
  return s.message().find(std::strerror(EADDRINUSE)) != absl::string_view::npos;
}

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
        inherited_fds_(InheritedFds(taken_)),
        control_(workers_),
        stats_(workers_) {}

  // Steps 1-5. An exit status when the process ends here: 1 for a start-up
  // error, or -e's exec failure; nullopt when the workers are to start.
  std::optional<int> StartUp();
  void StartWorkers();
  // Returns the exit status: 0 on SIGTERM/SIGINT, else a worker's request.
  int SignalLoop();
  // After SignalLoop: true when a successor took over (reported READY).
  bool HandedOver();
  // The old daemon's side after READY: stops the workers, tells the
  // successor, and keeps the listeners for --handover-grace. True when the
  // successor died meanwhile and this daemon serves again (then back to
  // SignalLoop); false when it is to exit.
  bool WatchSuccessor();
  void Shutdown(int status);

 private:
  // The metrics endpoint at start-up (step 2): the successor's
  // --metrics-listen wins over an inherited socket (handover.h).
  absl::Status OpenMetrics();
  // An endpoint on the port the predecessor's still held: bound once the
  // predecessor has let go of it (after STOPPED).
  void BindDeferredMetrics();
  void SpawnWorkers();
  void StopWorkers();
  void StartHandoverServer();
  void TakeBack(pid_t successor, int64_t after_ms);
  // The next of signals_ (its number), or 0 when one of `fds` is readable
  // (its index in `ready`), or -1 when `timeout_ms` (-1: none) passed.
  int NextEvent(int timeout_ms, const std::vector<int>& fds, size_t* ready);
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
  std::string metrics_where_;            // for the ready line, when metrics_ serves
  bool metrics_deferred_ = false;        // BindDeferredMetrics() after STOPPED
  std::atomic<pid_t> successor_pid_{0};  // the one that reported READY
  std::unique_ptr<SteeringProgram> steering_;
  // Before the registry: its thread hands answers to the relay until it stops.
  std::unique_ptr<ReplyRelay> relay_;
  std::unique_ptr<ListenerRegistry> registry_;
  std::string kernel_dispatch_;  // "on (...)" or "off (why)", for the ready line
  IoMode io_ = IoMode::kUring;
  sigset_t signals_{};
  UniqueFd signal_fd_;  // signalfd(signals_): the main thread's signals
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
    // The old daemon's named fds: --upgrade has put them at their numbers
    // already (PlaceNamedFds); a successor started by hand has its own.
    taken_->named.clear();
  } else if (!o_.registration) {
    auto opened = OpenListeners(o_, workers_, table_.get());
    if (!opened.ok()) return Fail(opened.status());
    listeners_ = std::move(*opened);
  }

  // The metrics listener too is bound while privileged.
  if (absl::Status s = OpenMetrics(); !s.ok()) return Fail(s);

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
    if (metrics_deferred_) BindDeferredMetrics();
  }
  return std::nullopt;
}

absl::Status Daemon::OpenMetrics() {
  UniqueFd inherited = taken_ ? std::move(taken_->metrics) : UniqueFd();
  const std::optional<SocketAddress> inherited_at =
      inherited ? LocalAddress(inherited.get()) : std::nullopt;
  const std::string was = inherited_at ? FormatHostPort(*inherited_at) : "?";
  if (!o_.metrics_listen || o_.exec_mode) {
    if (inherited) {
      Log(StrCat("metrics: not serving the predecessor's metrics endpoint ", was,
                 " (no --metrics-listen here); it closes when pid ", taken_->old_pid,
                 " hands over"));
    }
    return absl::OkStatus();
  }
  const std::string want = FormatHostPort(*o_.metrics_listen);
  if (inherited && inherited_at == *o_.metrics_listen) {
    auto adopted = MetricsServer::Adopt(std::move(inherited));
    if (!adopted.ok()) return adopted.status();
    metrics_ = std::move(*adopted);
    metrics_where_ = StrCat("http://", want, "/metrics (inherited from pid ", taken_->old_pid, ")");
    return absl::OkStatus();
  }
  // Another address: this daemon's own socket; the inherited one is closed
  // here and by the predecessor when it hands over.
  inherited.Reset();
  auto opened = MetricsServer::Open(*o_.metrics_listen);
  if (opened.ok()) {
    metrics_ = std::move(*opened);
    metrics_where_ = StrCat("http://", want, "/metrics");
    if (inherited_at) {
      Log(StrCat("metrics: ", want, " replaces the predecessor's endpoint ", was));
    }
    return absl::OkStatus();
  }
  if (inherited_at && inherited_at->port == o_.metrics_listen->port &&
      IsAddressInUse(opened.status())) {
    metrics_deferred_ = true;
    Log(StrCat("metrics: ", want, " shares its port with the predecessor's endpoint ", was,
               ": bound once pid ", taken_->old_pid, " lets go of it"));
    return absl::OkStatus();
  }
  return opened.status();
}

void Daemon::BindDeferredMetrics() {
  // The predecessor closes its copy when it hands over (before STOPPED); one
  // of an earlier version only at its exit, just after STOPPED.
  absl::Status last;
  for (int attempt = 0; attempt < 250; ++attempt) {
    auto opened = MetricsServer::Open(*o_.metrics_listen);
    if (opened.ok()) {
      metrics_ = std::move(*opened);
      metrics_where_ = StrCat("http://", FormatHostPort(*o_.metrics_listen), "/metrics");
      Log(StrCat("metrics: bound ", FormatHostPort(*o_.metrics_listen), " (after ", attempt * 20,
                 " ms)"));
      return;
    }
    last = opened.status();
    if (!IsAddressInUse(last)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Log(StrCat(last.message(), "; serving no metrics"));
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
  // Without it (no fd to spare), NextEvent falls back to sigtimedwait.
  signal_fd_.Reset(::signalfd(-1, &signals_, SFD_CLOEXEC));

  fd_reserve_ = std::make_unique<FdReserve>(ReserveFor(fd_limit_.now));
  // Here, after daemonizing (a fork's child gets a table only as large as
  // its open fds) and before the workers: a burst must not wait for the
  // table to grow (engine/sys/fd_table.h).
  if (int err = GrowFdTableForLimit(); err != 0) {
    Log(StrCat("fd table not grown ahead (", std::strerror(err), "); it grows as fds are taken"));
  }
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
  SpawnWorkers();
  if (registry_) {
    ListenerRegistry* registry = registry_.get();
    stats_.SetKernelCounts([registry] { return registry->Counts(); });
    registry_->Start();
  }
  StatsRegistry& stats = stats_;
  if (metrics_) metrics_->Start([&stats] { return PrometheusText(stats); });
  Log(StrCat(
      "ready: ", workers_, " worker(s), io=", io_ == IoMode::kUring ? "uring" : "sync",
      ", accepting on ", Where(), "; fds: limit ", fd_limit_.now,
      fd_limit_.now != fd_limit_.before ? StrCat(" (raised from ", fd_limit_.before, ")") : "",
      ", ", fd_reserve_->held(), " in reserve; kernel dispatch ", kernel_dispatch_));
  NotifySystemd("READY=1");
  StartHandoverServer();
}

void Daemon::StartHandoverServer() {
  if (!handover_) return;
  // The inherited fds that can carry connections go to a successor with
  // their numbers, so that its jump-fd:N and -i N name the same sockets.
  std::vector<int> named;
  for (int fd : inherited_fds_) {
    if (fd > STDERR_FILENO && FdChannelProblem(fd).empty()) named.push_back(fd);
  }
  HandoverOffer offer;
  offer.listener_fds = listeners_.all_fds;
  offer.metrics_fd = metrics_ ? metrics_->listener_fd() : -1;
  offer.cwd = start_dir_;
  if (upgrading_) offer.argv = taken_->argv;
  offer.kernel = registry_.get();
  offer.named_fds = std::move(named);
  // A successor took over: stop as on SIGTERM (the signal loop), then
  // WatchSuccessor.
  handover_->Start(std::move(offer), [this](pid_t pid) {
    successor_pid_.store(pid);
    ::kill(::getpid(), SIGTERM);
  });
}

void Daemon::SpawnWorkers() {
  const Options& o = o_;
  const WorkerConfig config = WorkerConfigOf(o);  // each worker thread takes a copy
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
      threads_.emplace_back([config, &control, &stats, setup]() mutable {
        WorkerSetup copy = setup;
        UringWorker worker(config, std::move(setup), &control, &stats);
        if (absl::Status s = worker.Init(); !s.ok()) {
          Log(StrCat("worker ", copy.index, ": ", s.message(), "; this worker uses --io=sync"));
          for (const ListenerInfo& l : copy.listeners) {
            ::fcntl(l.fd, F_SETFL, ::fcntl(l.fd, F_GETFL) | O_NONBLOCK);
          }
          SyncWorker(config, std::move(copy), &control, &stats).Run();
          return;
        }
        worker.Run();
      });
    } else {
      for (const ListenerInfo& l : setup.listeners) {
        ::fcntl(l.fd, F_SETFL, ::fcntl(l.fd, F_GETFL) | O_NONBLOCK);
      }
      threads_.emplace_back([config, &control, &stats, setup]() mutable {
        SyncWorker(config, std::move(setup), &control, &stats).Run();
      });
    }
  }
}

void Daemon::StopWorkers() {
  control_.RequestStop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

std::string Daemon::Where() const {
  std::string where;
  for (const std::string& d : listeners_.descriptions) where += (where.empty() ? "" : ", ") + d;
  if (o_.registration) {
    where = StrCat("registration group ", o_.registration->group, " at ", o_.registration->path);
  }
  if (metrics_) where += StrCat("; metrics at ", metrics_where_);
  return where;
}

// 7. The main thread: signals and periodic stats.
int Daemon::NextEvent(int timeout_ms, const std::vector<int>& fds, size_t* ready) {
  if (signal_fd_) {
    std::vector<pollfd> polled = {{signal_fd_.get(), POLLIN, 0}};
    for (int fd : fds) polled.push_back({fd, POLLIN, 0});
    if (::poll(polled.data(), polled.size(), timeout_ms) <= 0) return -1;
    if (polled[0].revents != 0) {
      signalfd_siginfo info{};
      if (::read(signal_fd_.get(), &info, sizeof(info)) == sizeof(info)) {
        return static_cast<int>(info.ssi_signo);
      }
      return -1;
    }
    for (size_t i = 1; i < polled.size(); ++i) {
      if (polled[i].revents != 0) {
        *ready = i - 1;
        return 0;
      }
    }
    return -1;
  }
  // No signalfd: the fds are looked at between waits of at most 100 ms.
  const int64_t deadline = timeout_ms < 0 ? INT64_MAX : NowMs() + timeout_ms;
  while (true) {
    for (size_t i = 0; i < fds.size(); ++i) {
      pollfd p{fds[i], POLLIN, 0};
      if (::poll(&p, 1, 0) > 0) {
        *ready = i;
        return 0;
      }
    }
    const int64_t left = std::min<int64_t>(deadline - NowMs(), fds.empty() ? 3'600'000 : 100);
    if (left <= 0) return -1;
    const timespec wait{static_cast<time_t>(left / 1000),
                        static_cast<long>(left % 1000) * 1'000'000};
    const int sig = ::sigtimedwait(&signals_, nullptr, &wait);
    if (sig > 0) return sig;
  }
}

int Daemon::SignalLoop() {
  while (true) {
    // The channel to a predecessor that watches this daemon: closed here
    // once the predecessor has left.
    std::vector<int> channel;
    if (taken_ && taken_->channel) channel.push_back(taken_->channel.get());
    size_t ready = 0;
    const int sig =
        NextEvent(o_.stats_interval_s > 0 ? o_.stats_interval_s * 1000 : -1, channel, &ready);
    if (sig < 0) {
      if (o_.stats_interval_s > 0) std::fputs(stats_.Format().c_str(), stderr);
      continue;
    }
    if (sig == 0) {
      taken_->channel.Reset();
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

bool Daemon::HandedOver() {
  if (!handover_) return false;
  handover_->Stop();  // joins its thread: has_successor() is final now
  return handover_->has_successor();
}

bool Daemon::WatchSuccessor() {
  const pid_t pid = successor_pid_.load();
  NotifySystemd("STOPPING=1");
  // The successor's program steers now (it attached before READY); ours
  // steers again if this daemon takes over again.
  if (steering_) steering_->Disable();
  // STOPPED as soon as no worker accepts any more: the successor serves
  // from then on, while ours drain what they accepted (the SIGTERM drain,
  // up to --dispatch-timeout with acknowledging backends). Waiting for the
  // drain left every route unserved meanwhile (issue 18: 5.9 s p50 with
  // about 60 connections held for acks).
  control_.RequestStop();
  if (!control_.WaitStoppedAccepting(std::chrono::seconds(kStopAcceptingTimeoutS))) {
    Log(StrCat("handover: a worker still accepts after ", kStopAcceptingTimeoutS,
               " s; telling successor pid ", pid, " after the drain"));
    StopWorkers();
  }
  // The successor serves metrics (its --metrics-listen decides where):
  // ours closes, so that a port it binds anew is free.
  metrics_.reset();
  handover_->SendStopped();
  StopWorkers();  // the drain: what was accepted is served
  const int64_t start = NowMs();
  const int64_t deadline = start + int64_t{o_.handover_grace_s} * 1000;
  if (o_.handover_grace_s > 0) {
    Log(StrCat("handover: workers stopped; keeping the listeners ", o_.handover_grace_s,
               " s in case successor pid ", pid, " dies (--handover-grace)"));
  }
  // How it ends: BYE on the channel (it stops on purpose), or its process
  // exits without one (it died). A successor of an earlier version closes
  // the channel after STOPPED and goes on: then only its process is watched.
  int channel = handover_->successor_fd();
  const int process = handover_->successor_pidfd();
  auto exited = [process](int wait_ms) {
    pollfd p{process, POLLIN, 0};
    return ::poll(&p, 1, wait_ms) > 0;
  };
  bool take_back = false;
  while (channel >= 0 || process >= 0) {
    const int64_t left = deadline - NowMs();
    if (left <= 0) {
      if (o_.handover_grace_s > 0) {
        Log(StrCat("handover: successor pid ", pid, " has served for ", o_.handover_grace_s,
                   " s; exiting"));
      }
      break;
    }
    std::vector<int> watched;
    if (channel >= 0) watched.push_back(channel);
    if (process >= 0) watched.push_back(process);
    size_t ready = 0;
    const int sig = NextEvent(static_cast<int>(left), watched, &ready);
    if (sig < 0) continue;
    if (sig == 0) {
      // The channel first: a BYE is sent before the process exits.
      pollfd p{channel, POLLIN, 0};
      if (channel >= 0 && (watched[ready] == channel || ::poll(&p, 1, 0) > 0)) {
        const SuccessorEnd end = handover_->ReadSuccessorEnd();
        channel = -1;
        if (end == SuccessorEnd::kBye) {
          Log(StrCat("handover: successor pid ", pid, " stops (SIGTERM/SIGINT); exiting too"));
          break;
        }
        // A dying process closes its fds before it is reported exited.
        if (process < 0 || exited(500)) {
          take_back = true;
          break;
        }
        Log(StrCat("handover: successor pid ", pid,
                   " closed its channel and runs on (an earlier version?): watching its process"));
        continue;
      }
      take_back = true;  // the process exited without a BYE
      break;
    }
    if (sig == SIGUSR1) {
      std::fputs(stats_.Format().c_str(), stderr);
    } else if (sig == SIGHUP) {
      Log(StrCat("handover: SIGHUP ignored: successor pid ", pid, " serves now"));
    } else if (sig == SIGTERM || sig == SIGINT) {
      Log(StrCat("handover: stopping as asked; successor pid ", pid, " serves"));
      break;
    }
  }
  if (take_back) {
    TakeBack(pid, NowMs() - start);
    return true;
  }
  // The successor serves the kernel dispatch listeners: no drain here, and
  // the listener socket's path is its own.
  if (registry_) registry_->HandedOver();
  return false;
}

void Daemon::TakeBack(pid_t successor, int64_t after_ms) {
  Log(StrCat("handover: successor pid ", successor, " died ", after_ms,
             " ms after this daemon stopped accepting: taking the listeners back and serving "
             "again (what it had accepted and not handed on is lost)"));
  control_.Resume();
  SpawnWorkers();
  if (registry_) {
    registry_->Resume();
    // Enabled again (WatchSuccessor disabled it), by the running table.
    auto notes = registry_->Publish(control_.Current());
    if (!notes.ok()) Log(StrCat("kernel dispatch: ", notes.status().message()));
  }
  if (o_.metrics_listen && !o_.exec_mode) {
    auto opened = MetricsServer::Open(*o_.metrics_listen);
    if (opened.ok()) {
      metrics_ = std::move(*opened);
      metrics_where_ = StrCat("http://", FormatHostPort(*o_.metrics_listen), "/metrics");
      StatsRegistry& stats = stats_;
      metrics_->Start([&stats] { return PrometheusText(stats); });
    } else {
      Log(StrCat(opened.status().message(), "; serving no metrics"));
    }
  }
  // PATH is the dead successor's socket now: this daemon's goes there again
  // (a rename in PATH's directory: after a privilege drop that may be
  // refused, and then only a restart makes this daemon upgradable again).
  handover_.reset();
  auto opened = HandoverServer::Open(*o_.handover_path);
  if (opened.ok()) {
    handover_ = std::move(*opened);
    StartHandoverServer();
  } else {
    Log(StrCat("handover: ", opened.status().message(),
               "; a successor cannot reach this daemon (restart it to make it upgradable)"));
  }
  Log(StrCat("serving again: accepting on ", Where()));
  NotifySystemd("READY=1");
}

void Daemon::Shutdown(int status) {
  NotifySystemd("STOPPING=1");
  // Stopping on purpose: a predecessor still watching leaves too.
  if (status == 0 && taken_) SayGoodbye(&*taken_);
  if (handover_) handover_->Stop();
  StopWorkers();
  if (registry_) {
    registry_->Stop();
    registry_->Drain();  // what listeners nobody serves hold goes on, as the workers' drain did
  }
  if (metrics_) metrics_->Stop();
  std::fputs(stats_.Format().c_str(), stderr);
  Log(StrCat("stopped (exit ", status, ")"));
}

}  // namespace

int RunDaemon(const Options& o, std::optional<HandoverReceived> upgrade) {
  Daemon daemon(o, std::move(upgrade));
  if (std::optional<int> early_exit = daemon.StartUp()) return *early_exit;
  daemon.StartWorkers();
  int status = daemon.SignalLoop();
  while (daemon.HandedOver()) {
    if (!daemon.WatchSuccessor()) {
      status = 0;
      break;
    }
    status = daemon.SignalLoop();  // serving again
  }
  daemon.Shutdown(status);
  return status;
}

}  // namespace sbx
