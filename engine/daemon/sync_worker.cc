#include "engine/daemon/sync_worker.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "engine/core/fd_passing.h"
#include "engine/sys/clock.h"

namespace sbx {

SyncWorker::SyncWorker(const Options& options, WorkerSetup setup, Control* control,
                       StatsRegistry* stats)
    : WorkerBase(options, std::move(setup), control, stats) {}

void SyncWorker::Run() {
  PickUpTable();
  std::vector<pollfd> fds;
  fds.push_back({control_->wake_fd(setup_.index), POLLIN, 0});
  if (setup_.registration_fd >= 0) {
    fds.push_back({setup_.registration_fd, POLLIN, 0});
  }
  for (const ListenerInfo& l : setup_.listeners) fds.push_back({l.fd, POLLIN, 0});
  while (!control_->stopping()) {
    if (::poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      uint64_t value;
      (void)!::read(fds[0].fd, &value, sizeof(value));
    }
    PickUpTable();
    if (control_->stopping()) break;
    for (size_t i = 1; i < fds.size(); ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      if (fds[i].fd == setup_.registration_fd) {
        ReceiveRegistered();
      } else {
        AcceptAll(setup_.listeners[i - 1 - (setup_.registration_fd >= 0 ? 1 : 0)]);
      }
    }
    graveyard_.clear();
  }
}

void SyncWorker::AcceptAll(const ListenerInfo& listener) {
  const bool want_remote = router_.needs_remote();
  for (int n = 0; n < 64; ++n) {  // bounded, so no listener starves another
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    const int fd = ::accept4(listener.fd, want_remote ? reinterpret_cast<sockaddr*>(&ss) : nullptr,
                             want_remote ? &len : nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
        Bump(stats_->accept_pauses);
        ::usleep(100'000);
      } else {
        Bump(stats_->accept_errors);
      }
      return;
    }
    auto remote = want_remote ? SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len)
                              : std::nullopt;
    Deliver(fd, &listener, remote ? &*remote : nullptr);
  }
}

void SyncWorker::ReceiveRegistered() {
  uint64_t rejected = 0;
  ReceiveOptions receive;
  receive.recv_flags = MSG_DONTWAIT;
  receive.rejected = &rejected;
  auto fd = ReceiveFd(setup_.registration_fd, receive);
  if (rejected > 0) RejectRegistered(rejected);
  if (fd.ok()) {
    Deliver(fd->Release(), nullptr, nullptr);
    return;
  }
  if (fd.error() == EAGAIN || fd.error() == EINTR) return;
  RegistrationEnded(fd.error() == ENOLINK ? 0 : fd.error());
  control_->RequestStop();
}

void SyncWorker::Deliver(int fd, const ListenerInfo* listener, const SocketAddress* remote) {
  UniqueFd conn(fd);
  Backend* backend = Admit(fd, listener, remote);
  if (backend == nullptr) return;
  if (Send(fd, backend)) {
    Bump(stats_->dispatched);
    Bump(*backend->delivered);
  }
}

bool SyncWorker::Send(int fd, Backend* b) {
  const uint64_t deadline = MonotonicNs() + static_cast<uint64_t>(options_.dispatch_timeout_ms) * 1'000'000;
  while (true) {
    const uint64_t now = MonotonicNs();
    if (b->down && !backends_.TryReconnect(b, now)) {
      if (now >= deadline) {
        stats_->Drop(DropReason::kBackendDown);
        return false;
      }
      ::usleep(static_cast<useconds_t>(std::min<uint64_t>(b->retry_at_ns > now ? b->retry_at_ns - now : 0,
                                                          deadline - now) / 1000 + 1));
      continue;
    }
    SysStatus sent = SendFd(b->fd(), fd, MSG_DONTWAIT);
    if (sent.ok()) return true;
    const int err = sent.error();
    if (err == EAGAIN || err == EWOULDBLOCK) {
      if (now >= deadline) {
        stats_->Drop(DropReason::kTimeout);
        return false;
      }
      pollfd p{b->fd(), POLLOUT, 0};
      ::poll(&p, 1, static_cast<int>((deadline - now) / 1'000'000) + 1);
      continue;
    }
    if (b->reconnectable() && IsBackendGone(err)) {
      backends_.MarkDown(b, err, now, &graveyard_);
      graveyard_.clear();
      continue;
    }
    stats_->Drop(DropReason::kSendError);
    backends_.LogTrouble(b, "send failed", err, now);
    if (options_.forced_fd && IsBackendGone(err)) control_->RequestExit(11);
    return false;
  }
}

}  // namespace sbx
