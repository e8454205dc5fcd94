// bench/sink: the backend of every benchmark scenario. Sets up its sources
// (datagram sockets, registrations, TCP listeners), runs the workers, and
// owns the signals: SIGUSR1 prints the summary, SIGTERM/SIGINT (or the
// lifetime running out) stop the workers, print the summary and exit 0.
// Socket files it bound are removed at exit. With --take-listener, each
// datagram socket then asks the engine for its backend's listener (kernel
// dispatch) and, when given it, the workers accept from it as well.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "bench/sink/sink_options.h"
#include "bench/sink/sink_worker.h"
#include "engine/core/listener_request.h"
#include "engine/core/registration.h"
#include "engine/core/unix_address.h"
#include "engine/sys/fd_table.h"
#include "engine/sys/unique_fd.h"

namespace sbx::bench {
namespace {

struct Sources {
  std::vector<std::string> names;              // backend index -> greeting
  std::vector<UniqueFd> fds;                   // everything we opened
  std::vector<SinkEndpoint> shared;            // channels, read by every worker
  std::vector<std::vector<SinkEndpoint>> own;  // listeners, per worker
  std::vector<std::string> bound_paths;        // unlinked at exit
  std::deque<std::atomic<bool>> failed;        // one flag per source
  size_t listeners_taken = 0;                  // --take-listener: granted
  std::atomic<bool>* NewFlag() { return &failed.emplace_back(false); }
};

size_t BackendIndex(Sources& sources, const std::string& name) {
  for (size_t i = 0; i < sources.names.size(); ++i) {
    if (sources.names[i] == name) return i;
  }
  sources.names.push_back(name);
  return sources.names.size() - 1;
}

bool Fail(const std::string& what, int err) {
  std::fprintf(stderr, "sink: %s: %s\n", what.c_str(), std::strerror(err));
  return false;
}

bool BindDatagram(const SinkSource& source, Sources& sources, size_t backend) {
  struct stat st {};
  if (::lstat(source.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Fail(source.path + " exists and is not a socket", EEXIST);
    ::unlink(source.path.c_str());  // stale socket of an earlier run
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return Fail("socket(AF_UNIX)", errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, source.path.data(), source.path.size());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Fail("bind " + source.path, errno);
  }
  sources.bound_paths.push_back(source.path);
  if (::chmod(source.path.c_str(), 0666) != 0) return Fail("chmod " + source.path, errno);
  sources.shared.push_back(
      {SinkEndpoint::Kind::kChannel, fd.get(), backend, false, sources.NewFlag()});
  sources.fds.push_back(std::move(fd));
  return true;
}

// Kernel dispatch: asks the engine for the listener its program steers this
// backend's connections into, with the datagram socket just bound (the last
// fd opened). The socket keeps receiving either way: connections the program
// cannot steer, and those queued before, still come over it. Never fails the
// sink: a refusal or a missing engine is said once on stderr.
void TakeListener(const SinkSource& source, const SinkOptions& options, Sources& sources,
                  size_t backend) {
  const char* engine =
      options.listener_socket.empty() ? ListenerSocketPath() : options.listener_socket.c_str();
  const int receiving = sources.fds.back().get();
  auto taken = RequestListener(receiving, engine, source.path.c_str(), 2000);
  if (!taken.ok()) {
    std::fprintf(stderr,
                 "sink: backend %s: no listener from %s (%s); its connections come over %s only\n",
                 source.name.c_str(), engine, std::strerror(taken.error()), source.path.c_str());
    return;
  }
  std::fprintf(stderr, "sink: backend %s: listener taken from %s (kernel dispatch)\n",
               source.name.c_str(), engine);
  // The sink closes first, so each steered connection leaves a TIME_WAIT on
  // the port the client connected to, in the listener's bind bucket; without
  // SO_REUSEADDR there, an engine started next (the harness starts one per
  // sample) cannot bind that port for a minute. The engine's steering
  // listeners do not set it yet: set here, on the socket the engine shares.
  const int one = 1;
  ::setsockopt(taken->listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // One worker per taken listener, in turn, as SO_REUSEPORT copies give
  // each worker its own listeners. Shared by every worker's multishot
  // accept, a listener doubled the p99 at 50% load against direct's
  // (docs/kernel-dispatch.md, "Measured"): io_uring's accept waits are
  // exclusive, one waiter woken per connection, and a stall of the worker
  // woken held every connection behind it, not just its share.
  sources.own[backend % sources.own.size()].push_back({SinkEndpoint::Kind::kListener,
                                                       taken->listener.get(), backend, false,
                                                       sources.NewFlag(), /*taken=*/true});
  sources.fds.push_back(std::move(taken->listener));
  // Answers the engine's sending sockets cannot take (another network
  // namespace) go over the channel.
  for (SinkEndpoint& e : sources.shared) {
    if (e.kind == SinkEndpoint::Kind::kChannel && e.fd == receiving) e.relay = taken->channel.get();
  }
  sources.fds.push_back(std::move(taken->channel));  // open while we serve the listener
  ++sources.listeners_taken;
}

bool Register(const SinkSource& source, Sources& sources, size_t backend) {
  auto fd = RegisterWithServer(source.path, source.group);
  if (!fd.ok()) {
    return Fail("register group " + std::to_string(source.group) + " at " + source.path,
                fd.error());
  }
  sources.shared.push_back(
      {SinkEndpoint::Kind::kChannel, fd->get(), backend, true, sources.NewFlag()});
  sources.fds.push_back(std::move(*fd));
  return true;
}

bool Listen(const SinkSource& source, Sources& sources, size_t backend) {
  // One SO_REUSEPORT copy per worker: the kernel spreads connections.
  for (auto& own : sources.own) {
    UniqueFd fd(::socket(source.address.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return Fail("socket(TCP)", errno);
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    // AnyIP addresses are routed to lo, not assigned: binding one needs FREEBIND.
    if (source.address.family == AF_INET6) {
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
    } else {
      ::setsockopt(fd.get(), IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
    }
    sockaddr_storage storage{};
    socklen_t len = source.address.ToSockaddr(&storage);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&storage), len) != 0) {
      return Fail("bind TCP port " + std::to_string(source.address.port), errno);
    }
    if (::listen(fd.get(), 4096) != 0) return Fail("listen", errno);
    own.push_back({SinkEndpoint::Kind::kListener, fd.get(), backend, false, sources.NewFlag()});
    sources.fds.push_back(std::move(fd));
  }
  return true;
}

void PrintSummary(const Sources& sources, const SinkCounters& counters, const char* event) {
  std::string out = std::string("{\"event\":\"") + event + "\",\"backends\":{";
  uint64_t total = 0;
  uint64_t total_via_listener = 0;
  for (size_t i = 0; i < sources.names.size(); ++i) {
    uint64_t received = counters.per_backend[i].received.load();
    uint64_t errors = counters.per_backend[i].send_errors.load();
    uint64_t via_listener = counters.per_backend[i].via_listener.load();
    total += received;
    total_via_listener += via_listener;
    char item[160];
    std::snprintf(item, sizeof(item),
                  "\":{\"received\":%llu,\"greeted\":%llu,\"send_errors\":%llu,"
                  "\"via_listener\":%llu}",
                  static_cast<unsigned long long>(received),
                  static_cast<unsigned long long>(received - errors),
                  static_cast<unsigned long long>(errors),
                  static_cast<unsigned long long>(via_listener));
    out += (i ? ",\"" : "\"") + sources.names[i] + item;  // names are plain bytes from argv
  }
  char tail[256];
  std::snprintf(tail, sizeof(tail),
                "},\"total_received\":%llu,\"total_via_listener\":%llu,"
                "\"listeners_taken\":%zu,\"no_fd\":%llu,\"extra_fds\":%llu,"
                "\"channel_closed\":%llu,\"close_errors\":%llu}\n",
                static_cast<unsigned long long>(total),
                static_cast<unsigned long long>(total_via_listener), sources.listeners_taken,
                static_cast<unsigned long long>(counters.no_fd.load()),
                static_cast<unsigned long long>(counters.extra_fds.load()),
                static_cast<unsigned long long>(counters.channel_closed.load()),
                static_cast<unsigned long long>(counters.close_errors.load()));
  out += tail;
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);
}

int Main(int argc, char** argv) {
  int exit_code = 0;
  auto options = ParseSinkOptions(argc, argv, &exit_code);
  if (!options) return exit_code;

  // Blocked before any thread starts, so only the main thread takes them.
  sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGTERM, SIGINT, SIGUSR1, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  // A burst of 10,000 simultaneous connections needs more than the usual
  // 1024 fds; and a table grown under load would stall every thread of
  // the tool for a grace period, measured as the server's (fd_table.h).
  RaiseFdLimit();
  GrowFdTableForLimit();

  Sources sources;
  sources.own.resize(options->threads);
  bool ok = true;
  for (const SinkSource& source : options->sources) {
    size_t backend = BackendIndex(sources, source.name);
    if (source.kind == SinkSource::Kind::kDatagram) {
      ok = BindDatagram(source, sources, backend);
      if (ok && options->take_listener) TakeListener(source, *options, sources, backend);
    }
    if (source.kind == SinkSource::Kind::kRegister) ok = Register(source, sources, backend);
    if (source.kind == SinkSource::Kind::kListen) ok = Listen(source, sources, backend);
    if (!ok) break;
  }
  std::atomic<int> status{ok ? 0 : 1};  // workers set 1 when their ring fails
  SinkCounters counters(sources.names.size());
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  std::vector<SinkWorkerConfig> configs(ok ? options->threads : 0);
  std::latch ready(static_cast<std::ptrdiff_t>(configs.size()));
  for (unsigned t = 0; t < configs.size(); ++t) {
    configs[t].endpoints = sources.shared;
    configs[t].endpoints.insert(configs[t].endpoints.end(), sources.own[t].begin(),
                                sources.own[t].end());
    configs[t].names = &sources.names;
    configs[t].counters = &counters;
    configs[t].stop = &stop;
    configs[t].ready = &ready;
    configs[t].recv_depth = options->recv_depth;
    configs[t].capabilities.max_fds = static_cast<uint16_t>(options->max_fds);
    configs[t].capabilities.acks = options->ack;
    threads.emplace_back([&config = configs[t], &status] {
      if (RunSinkWorker(config) != 0) status = 1;
    });
  }
  ready.wait();  // every ring armed: "ready" means connections are taken
  if (ok && status == 0) {
    std::puts("ready");
    std::fflush(stdout);
  }
  timespec deadline{};
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += static_cast<time_t>(options->lifetime_s);
  while (ok && status == 0) {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec >= deadline.tv_sec) {
      std::fprintf(stderr, "sink: lifetime of %.0f s reached, exiting\n", options->lifetime_s);
      break;
    }
    timespec wait{1, 0};
    int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig == SIGUSR1) PrintSummary(sources, counters, "sink");
    if (sig == SIGTERM || sig == SIGINT) break;
  }
  stop.store(true);
  for (auto& thread : threads) thread.join();
  PrintSummary(sources, counters, "sink-exit");
  for (const std::string& path : sources.bound_paths) ::unlink(path.c_str());
  return status.load();
}

}  // namespace
}  // namespace sbx::bench

int main(int argc, char** argv) { return sbx::bench::Main(argc, argv); }
