#include "engine/daemon/metrics_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "engine/core/str_cat.h"
#include "engine/sys/clock.h"

namespace sbx {
namespace {

constexpr size_t kMaxClients = 32;
constexpr int kListenBacklog = 64;
constexpr uint64_t kClientDeadlineNs = 2'000'000'000;
constexpr size_t kMaxRequest = 4096;
constexpr size_t kMaxDiscard = 64 * 1024;
constexpr uint64_t kLingerNs = 200'000'000;

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
  Exchange(UniqueFd fd, uint64_t now) : fd_(std::move(fd)), deadline_(now + kClientDeadlineNs) {}

  int fd() const { return fd_.get(); }
  uint64_t deadline() const { return deadline_; }
  short events() const { return phase_ == Phase::kWriting ? POLLOUT : POLLIN; }

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
  uint64_t deadline_;
  Phase phase_ = Phase::kReading;
  std::string request_, answer_;
  size_t sent_ = 0, discarded_ = 0;
};

// Milliseconds until the earliest deadline (rounded up), -1 with no client.
int PollTimeoutMs(const std::vector<Exchange>& clients, uint64_t now) {
  if (clients.empty()) return -1;
  uint64_t earliest = UINT64_MAX;
  for (const Exchange& c : clients) earliest = std::min(earliest, c.deadline());
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
  std::vector<Exchange> clients;
  std::vector<pollfd> fds;
  while (true) {
    // Past kMaxClients the listener is not polled: new clients wait in the
    // backlog until a slot frees.
    const bool accepting = clients.size() < kMaxClients;
    fds.assign({{wake_.get(), POLLIN, 0}, {accepting ? listener_.get() : -1, POLLIN, 0}});
    for (const Exchange& c : clients) fds.push_back({c.fd(), c.events(), 0});
    if (::poll(fds.data(), fds.size(), PollTimeoutMs(clients, MonotonicNs())) < 0) {
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
    clients.erase(clients.begin() + static_cast<ptrdiff_t>(kept), clients.end());
    if ((fds[1].revents & POLLIN) == 0) continue;
    while (clients.size() < kMaxClients) {
      UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!client) break;  // EAGAIN, or EMFILE and friends: the next poll retries
      clients.emplace_back(std::move(client), now);
      if (!clients.back().Advance(render_, now)) clients.pop_back();
    }
  }
}

}  // namespace sbx
