#include "engine/core/metrics_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/core/str_cat.h"
#include "engine/sys/clock.h"
#include "engine/sys/resource_shortage.h"

namespace sbx {
namespace {

// Clients served at once, in all and from one peer (PeerOf).
constexpr size_t kMaxClients = 64;
constexpr size_t kMaxPerPeer = 8;
// New clients taken per turn of the loop, so that a flood of connections
// cannot starve the clients in progress.
constexpr size_t kAcceptsPerTurn = 64;
constexpr int kListenBacklog = 128;
constexpr uint64_t kClientDeadlineNs = 2'000'000'000;
constexpr size_t kMaxRequest = 4096;
constexpr size_t kMaxDiscard = 64 * 1024;
constexpr uint64_t kLingerNs = 200'000'000;
// Accepting without fds: 5 ms (as the daemon's listeners), doubling to 1 s.
constexpr uint64_t kFirstPauseNs = 5'000'000;
constexpr uint64_t kMaxPauseNs = 1'000'000'000;

void Say(const std::string& line) {
  std::fprintf(stderr, "%s: metrics: %s\n", program_invocation_short_name, line.c_str());
}

// Whom the per-peer bound counts together: an IPv4 address (held mapped),
// or an IPv6 address's /64 (what one host or site usually has to itself).
using PeerKey = std::array<uint8_t, 16>;

PeerKey PeerOf(const sockaddr_storage& ss) {
  PeerKey key{};
  if (ss.ss_family == AF_INET) {
    key[10] = key[11] = 0xff;
    std::memcpy(&key[12], &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, 4);
  } else if (ss.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
    std::memcpy(key.data(), &a, 16);
    if (!IN6_IS_ADDR_V4MAPPED(&a)) std::memset(&key[8], 0, 8);
  }
  return key;
}

absl::Status Errno(int err, std::string_view what) {
  return absl::ErrnoToStatus(err, StrCat("--metrics-listen: ", what));
}

std::string Response(std::string_view status, std::string_view body) {
  return StrCat("HTTP/1.0 ", status,
                "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n",
                "Content-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
}

bool HeadersComplete(const std::string& request) {
  return request.find("\r\n\r\n") != std::string::npos || request.find("\n\n") != std::string::npos;
}

// The answer to a request (complete, cut at kMaxRequest, or ended by EOF).
std::string Answer(const std::string& request, const std::function<std::string()>& render) {
  const std::string_view line = std::string_view(request).substr(0, request.find_first_of("\r\n"));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || line.substr(0, sp1) != "GET") {
    return Response("400 Bad Request", "expected GET /metrics\n");
  }
  const std::string_view path =
      line.substr(sp1 + 1, sp2 == std::string_view::npos ? sp2 : sp2 - sp1 - 1);
  if (path != "/metrics" && path != "/")
    return Response("404 Not Found", "the counters are at /metrics\n");
  return Response("200 OK", render());
}

// One client's exchange on a non-blocking socket: read the request, write
// the answer, then drain. Closing a socket with unread input sends a reset,
// which can destroy the answer before the client reads it: so after the
// answer the write side is shut and what the client still sends is read and
// discarded (bounded, kLingerNs) until it closes.
class Exchange {
 public:
  Exchange(UniqueFd fd, const PeerKey& peer, uint64_t now)
      : fd_(std::move(fd)), peer_(peer), deadline_(now + kClientDeadlineNs) {}

  int fd() const { return fd_.get(); }
  const PeerKey& peer() const { return peer_; }
  uint64_t deadline() const { return deadline_; }
  short events() const { return phase_ == Phase::kWriting ? POLLOUT : POLLIN; }
  // Still waiting for its request: the kind of client that may be closed to
  // make room for a new one.
  bool waiting() const { return phase_ == Phase::kReading; }

  // At the deadline: a client that has not finished its request is told so
  // (best effort, never waiting) before it is closed.
  void Expire() {
    if (phase_ != Phase::kReading) return;
    const std::string answer = Response("408 Request Timeout", "no complete request within 2 s\n");
    (void)!::send(fd(), answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }

  // Does what the socket allows now; false when the exchange is over.
  bool Advance(const std::function<std::string()>& render, uint64_t now) {
    if (phase_ == Phase::kReading && !Read(render)) return false;
    if (phase_ == Phase::kWriting && !Write(now)) return false;
    if (phase_ == Phase::kDraining) return Drain();
    return true;
  }

 private:
  enum class Phase { kReading, kWriting, kDraining };

  bool Read(const std::function<std::string()>& render) {
    char buf[1024];
    while (request_.size() < kMaxRequest && !HeadersComplete(request_)) {
      const ssize_t n = ::recv(fd(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;  // more later
      if (n < 0) return false;                    // reset: nobody to answer
      if (n == 0) break;                          // EOF: answer what came
      request_.append(buf, static_cast<size_t>(n));
    }
    answer_ = Answer(request_, render);
    phase_ = Phase::kWriting;
    return true;
  }

  bool Write(uint64_t now) {
    while (sent_ < answer_.size()) {
      const ssize_t n =
          ::send(fd(), answer_.data() + sent_, answer_.size() - sent_, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;
      if (n <= 0) return false;  // gone: nothing more to do for it
      sent_ += static_cast<size_t>(n);
    }
    ::shutdown(fd(), SHUT_WR);
    deadline_ = std::min(deadline_, now + kLingerNs);
    phase_ = Phase::kDraining;
    return true;
  }

  bool Drain() {
    char buf[4096];
    while (discarded_ < kMaxDiscard) {
      const ssize_t n = ::recv(fd(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;
      if (n <= 0) return false;  // closed (or reset): done
      discarded_ += static_cast<size_t>(n);
    }
    return false;
  }

  UniqueFd fd_;
  PeerKey peer_;
  uint64_t deadline_;
  Phase phase_ = Phase::kReading;
  std::string request_, answer_;
  size_t sent_ = 0, discarded_ = 0;
};

// Tells a client it is not served (best effort, never waiting); the caller
// closes it.
void SendUnavailable(int fd, std::string_view why) {
  const std::string answer = Response("503 Service Unavailable", StrCat(why, "\n"));
  (void)!::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Makes room for a new client from `peer`, by the bounds in the header: at
// the peer's bound, its oldest client still waiting for its request is
// closed; at the overall bound, the oldest waiting one of the peer with the
// most waiting clients. False when there is none to close (the new client is
// then refused).
bool MakeRoom(std::vector<Exchange>* clients, const PeerKey& peer) {
  size_t same = 0;
  for (const Exchange& c : *clients) same += c.peer() == peer ? 1 : 0;
  auto victim = clients->end();
  if (same >= kMaxPerPeer) {
    victim = std::find_if(clients->begin(), clients->end(),
                          [&](const Exchange& c) { return c.waiting() && c.peer() == peer; });
  } else if (clients->size() >= kMaxClients) {
    size_t most = 0;  // clients are in the order they came: the first found is the oldest
    for (auto it = clients->begin(); it != clients->end(); ++it) {
      if (!it->waiting()) continue;
      const auto waiting = static_cast<size_t>(
          std::count_if(clients->begin(), clients->end(),
                        [&](const Exchange& c) { return c.waiting() && c.peer() == it->peer(); }));
      if (waiting > most) {
        most = waiting;
        victim = it;
      }
    }
  } else {
    return true;
  }
  if (victim == clients->end()) return false;
  SendUnavailable(victim->fd(), "too many connections waiting; closed the oldest");
  clients->erase(victim);
  return true;
}

// The listener's pause while accept fails for want of fds or memory.
class AcceptPause {
 public:
  bool paused(uint64_t now) const { return resume_ns_ > now; }
  uint64_t resume_ns() const { return resume_ns_; }

  void Starved(int err, uint64_t now) {
    if (pause_ns_ == 0) {
      since_ns_ = now;
      Say(StrCat("accept: ", std::strerror(err),
                 "; the metrics listener pauses (5 ms, doubling to 1 s, or until one of its "
                 "clients leaves)"));
    }
    pause_ns_ = pause_ns_ == 0 ? kFirstPauseNs : std::min(2 * pause_ns_, kMaxPauseNs);
    resume_ns_ = now + pause_ns_;
  }
  // An fd came free: try again now.
  void FdFreed(uint64_t now) { resume_ns_ = std::min(resume_ns_, now); }
  void Fed(uint64_t now) {
    if (pause_ns_ == 0) return;
    Say(StrCat("accepting again after ", (now - since_ns_) / 1'000'000, " ms"));
    pause_ns_ = 0;
    resume_ns_ = 0;
  }

 private:
  uint64_t pause_ns_ = 0;  // 0: not starved
  uint64_t resume_ns_ = 0;
  uint64_t since_ns_ = 0;
};

// Milliseconds until the earliest deadline or the end of a pause (rounded
// up), -1 with neither.
int PollTimeoutMs(const std::vector<Exchange>& clients, const AcceptPause& pause, uint64_t now) {
  uint64_t earliest = pause.paused(now) ? pause.resume_ns() : UINT64_MAX;
  for (const Exchange& c : clients) earliest = std::min(earliest, c.deadline());
  if (earliest == UINT64_MAX) return -1;
  if (earliest <= now) return 0;
  return static_cast<int>((earliest - now + 999'999) / 1'000'000);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Open(const SocketAddress& address) {
  const std::string where = FormatHostPort(address);
  // Non-blocking: Serve() accepts until EAGAIN.
  UniqueFd fd(::socket(address.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Errno(errno, StrCat("socket for ", where));
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss{};
  const socklen_t len = address.ToSockaddr(&ss);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return Errno(errno, StrCat("bind ", where));
  }
  if (::listen(fd.get(), kListenBacklog) != 0) return Errno(errno, StrCat("listen ", where));
  return Adopt(std::move(fd));
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Adopt(UniqueFd listener) {
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return Errno(errno, "eventfd");
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(listener), std::move(wake)));
}

MetricsServer::MetricsServer(UniqueFd listener, UniqueFd wake)
    : listener_(std::move(listener)), wake_(std::move(wake)) {}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Start(std::function<std::string()> render) {
  render_ = std::move(render);
  thread_ = std::thread([this] { Serve(); });
}

void MetricsServer::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
  thread_.join();
}

void MetricsServer::Serve() {
  ::pthread_setname_np(::pthread_self(), "sbx-metrics");
  std::vector<Exchange> clients;
  std::vector<pollfd> fds;
  AcceptPause pause;
  while (true) {
    // The listener is not polled while paused, nor when every client is
    // being answered at the overall bound: new clients wait in the backlog.
    const uint64_t before = MonotonicNs();
    const bool accepting =
        !pause.paused(before) && (clients.size() < kMaxClients ||
                                  std::any_of(clients.begin(), clients.end(),
                                              [](const Exchange& c) { return c.waiting(); }));
    fds.assign({{wake_.get(), POLLIN, 0}, {accepting ? listener_.get() : -1, POLLIN, 0}});
    for (const Exchange& c : clients) fds.push_back({c.fd(), c.events(), 0});
    if (::poll(fds.data(), fds.size(), PollTimeoutMs(clients, pause, before)) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    const uint64_t now = MonotonicNs();
    // Clients first (fds[2 + i] is clients[i]), then the new ones: an
    // exchange that ends or reaches its deadline is closed.
    size_t kept = 0;
    for (size_t i = 0; i < clients.size(); ++i) {
      const bool alive = fds[2 + i].revents == 0 ? true : clients[i].Advance(render_, now);
      if (alive && clients[i].deadline() <= now) {
        clients[i].Expire();
      } else if (alive) {
        if (kept != i) clients[kept] = std::move(clients[i]);
        ++kept;
      }
    }
    if (kept < clients.size()) pause.FdFreed(now);
    clients.erase(clients.begin() + static_cast<ptrdiff_t>(kept), clients.end());
    if ((fds[1].revents & POLLIN) == 0) continue;
    for (size_t n = 0; n < kAcceptsPerTurn; ++n) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      UniqueFd client(::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len,
                                SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!client) {
        // The connection stays queued: retried when the pause ends. Any
        // other error (EAGAIN, ECONNABORTED...): the next poll says.
        const int err = errno;
        if (IsResourceShortage(err)) pause.Starved(err, now);
        break;
      }
      pause.Fed(now);
      const PeerKey peer = PeerOf(ss);
      if (!MakeRoom(&clients, peer)) {
        SendUnavailable(client.get(), "too many connections from this address");
        continue;
      }
      clients.emplace_back(std::move(client), peer, now);
      if (!clients.back().Advance(render_, now)) clients.pop_back();
    }
  }
}

}  // namespace sbx
