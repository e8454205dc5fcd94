#include "engine/daemon/metrics_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "absl/status/status.h"
#include "engine/core/str_cat.h"

namespace sbx {
namespace {

constexpr int kClientTimeoutS = 2;
constexpr size_t kMaxRequest = 4096;
constexpr size_t kMaxDiscard = 64 * 1024;
constexpr int kLingerMs = 200;

absl::Status Errno(int err, std::string_view what) {
  return absl::ErrnoToStatus(err, StrCat("--metrics-listen: ", what));
}

void SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // gone or timed out: nothing more to do for it
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Closing a socket with unread input sends a reset, which can destroy the
// answer before the client reads it: stop sending, then read and discard
// what the client still sends (bounded) until it closes.
void CloseGracefully(int fd) {
  ::shutdown(fd, SHUT_WR);
  char buf[4096];
  size_t discarded = 0;
  pollfd p{fd, POLLIN, 0};
  while (discarded < kMaxDiscard && ::poll(&p, 1, kLingerMs) > 0) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n <= 0) return;
    discarded += static_cast<size_t>(n);
  }
}

std::string Response(std::string_view status, std::string_view body) {
  return StrCat("HTTP/1.0 ", status, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n",
                "Content-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Open(const SocketAddress& address) {
  const std::string where = FormatHostPort(address);
  UniqueFd fd(::socket(address.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Errno(errno, StrCat("socket for ", where));
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss{};
  const socklen_t len = address.ToSockaddr(&ss);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return Errno(errno, StrCat("bind ", where));
  }
  if (::listen(fd.get(), 16) != 0) return Errno(errno, StrCat("listen ", where));
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
  while (true) {
    pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    if ((fds[1].revents & POLLIN) == 0) continue;
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client) continue;  // EMFILE and friends: the next poll retries
    Answer(client.get());
    CloseGracefully(client.get());
  }
}

void MetricsServer::Answer(int fd) {
  const timeval limit{kClientTimeoutS, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
  // The request line is all we need; read until the end of the headers.
  std::string request;
  char buf[1024];
  while (request.size() < kMaxRequest && request.find("\r\n\r\n") == std::string::npos &&
         request.find("\n\n") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    request.append(buf, static_cast<size_t>(n));
  }
  const std::string_view line = std::string_view(request).substr(0, request.find_first_of("\r\n"));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || line.substr(0, sp1) != "GET") {
    SendAll(fd, Response("400 Bad Request", "expected GET /metrics\n"));
    return;
  }
  const std::string_view path = line.substr(sp1 + 1, sp2 == std::string_view::npos ? sp2 : sp2 - sp1 - 1);
  if (path != "/metrics" && path != "/") {
    SendAll(fd, Response("404 Not Found", "the counters are at /metrics\n"));
    return;
  }
  SendAll(fd, Response("200 OK", render_()));
}

}  // namespace sbx
