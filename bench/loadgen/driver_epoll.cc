// The epoll driver: non-blocking connect, then wait for EPOLLIN only (a
// refused or reset connect shows up as EPOLLERR/EPOLLHUP, so no EPOLLOUT
// round). Per connection: socket, connect, epoll_ctl, recv, close, plus a
// share of epoll_wait.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "bench/loadgen/loadgen_core.h"
#include "engine/sys/unique_fd.h"

namespace sbx::bench {
namespace {

constexpr int kMaxEvents = 256;

class EpollDriver {
 public:
  EpollDriver(const LoadOptions& options, unsigned thread, ThreadStats& stats)
      : options_(options),
        stats_(stats),
        pacer_(options, thread, NowNs()),
        table_(ConnTable::CapacityFor(options)),
        next_target_(thread % options.targets.size()) {}

  int Run();

 private:
  void Start(uint64_t now);
  void OnEvent(Conn& conn, uint32_t events);
  void Finish(Conn& conn, Outcome outcome, int err = 0);

  const LoadOptions& options_;
  ThreadStats& stats_;
  Pacer pacer_;
  ConnTable table_;
  size_t next_target_;
  UniqueFd epoll_;
};

void EpollDriver::Finish(Conn& conn, Outcome outcome, int err) {
  ::close(conn.fd);  // also leaves the epoll set
  Record(stats_, conn, outcome, conn.first_byte_ns, options_.targets, err);
  table_.Free(&conn);
}

void EpollDriver::Start(uint64_t now) {
  size_t target_index = next_target_;
  next_target_ = (next_target_ + 1) % options_.targets.size();
  const Target& target = options_.targets[target_index];
  Conn* conn = table_.Allocate(now, target_index);
  if (conn == nullptr) return;  // the pacer never asks for more than fits
  pacer_.Started();
  ++stats_.started;
  conn->fd = ::socket(target.address.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (conn->fd < 0) {
    int err = errno;
    Record(stats_, *conn, Outcome::kLocal, 0, options_.targets, err);
    table_.Free(conn);
    return;
  }
  sockaddr_storage storage{};
  socklen_t len = target.address.ToSockaddr(&storage);
  if (::connect(conn->fd, reinterpret_cast<sockaddr*>(&storage), len) != 0 &&
      errno != EINPROGRESS) {
    int err = errno;
    return Finish(*conn, OutcomeOfErrno(err), err);
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = uint64_t{conn->generation} << 32 | table_.IndexOf(conn);
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, conn->fd, &ev) != 0) {
    int err = errno;
    Finish(*conn, Outcome::kLocal, err);
  }
}

void EpollDriver::OnEvent(Conn& conn, uint32_t events) {
  while (true) {
    ssize_t n = ::recv(conn.fd, conn.buffer + conn.got, sizeof(conn.buffer) - conn.got, 0);
    if (n > 0) {
      if (conn.got == 0) conn.first_byte_ns = NowNs();
      conn.got += static_cast<uint32_t>(n);
      Outcome judged = JudgeGreeting(conn, options_.targets[conn.target]);
      if (judged != Outcome::kCount) return Finish(conn, judged);
      continue;  // part of a longer greeting; the rest may be queued too
    }
    if (n == 0) {
      return Finish(conn, conn.got ? Outcome::kWrongGreeting : Outcome::kNoGreeting);
    }
    int err = errno;
    if (err == EAGAIN) {
      if (events & (EPOLLERR | EPOLLHUP)) {  // e.g. refused: recv said EAGAIN? use SO_ERROR
        socklen_t len = sizeof(err);
        ::getsockopt(conn.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) return Finish(conn, OutcomeOfErrno(err), err);
      }
      return;  // spurious wake-up; wait for more
    }
    return Finish(conn, OutcomeOfErrno(err), err);
  }
}

int EpollDriver::Run() {
  epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) {
    std::fprintf(stderr, "load_generator: epoll_create1: %s\n", std::strerror(errno));
    return errno;
  }
  const uint64_t timeout_ns = options_.timeout_ms * 1000000;
  epoll_event events[kMaxEvents];
  while (true) {
    uint64_t now = NowNs();
    for (uint64_t n = pacer_.Allowed(now, table_.in_flight(), 512); n > 0; --n) Start(now);
    table_.Expire(now, timeout_ns, [&](Conn& c) { Finish(c, Outcome::kTimeout); });
    if (pacer_.Finished(now) && table_.in_flight() == 0) return 0;
    int wait_ms = static_cast<int>((pacer_.WaitNs(now) + 999999) / 1000000);
    int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, wait_ms);
    if (n < 0 && errno != EINTR) {
      std::fprintf(stderr, "load_generator: epoll_wait: %s\n", std::strerror(errno));
      return errno;
    }
    for (int i = 0; i < n; ++i) {
      Conn& conn = table_.at(events[i].data.u64 & 0xffffffff);
      if (conn.active && conn.generation == events[i].data.u64 >> 32) {
        OnEvent(conn, events[i].events);
      }
    }
  }
}

}  // namespace

int RunEpollThread(const LoadOptions& options, unsigned thread, ThreadStats& stats) {
  EpollDriver driver(options, thread, stats);
  return driver.Run();
}

}  // namespace sbx::bench
