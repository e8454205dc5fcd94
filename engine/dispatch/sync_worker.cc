#include "engine/dispatch/sync_worker.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "engine/core/fd_passing.h"
#include "engine/sys/clock.h"

namespace sbx {
namespace {

constexpr int kAcceptsPerTurn = 64;  // bounded, so no listener starves another
constexpr uint64_t kIdleWakeNs = 1'000'000'000;

}  // namespace

SyncWorker::SyncWorker(const WorkerConfig& config, WorkerSetup setup, Control* control,
                       StatsRegistry* stats)
    : WorkerBase(config, std::move(setup), control, stats) {
  MakeScheduler(this);
  for (const ListenerInfo& info : setup_.listeners) listeners_.push_back({info});
}

void SyncWorker::Run() {
  PickUpTable();
  std::vector<pollfd> fds;
  std::vector<Listener*> polled_listeners;
  bool said_not_accepting = false;
  while (true) {
    // Stopping: no more accepting; connections still waiting get until
    // their deadline, as in the io_uring worker, then are counted.
    const bool stopping = control_->stopping();
    if (stopping && !said_not_accepting) {
      control_->StoppedAccepting(setup_.index);  // it accepts only below
      said_not_accepting = true;
    }
    if (stopping && scheduler_->idle()) break;
    const uint64_t now = MonotonicNs();
    fds.clear();
    polled_listeners.clear();
    fds.push_back({control_->wake_fd(setup_.index), POLLIN, 0});
    const bool registration = setup_.registration_fd >= 0 && !stopping;
    if (registration) fds.push_back({setup_.registration_fd, POLLIN, 0});
    const size_t first_listener = fds.size();
    for (Listener& l : listeners_) {
      if (stopping || !Polled(l, now)) continue;
      fds.push_back({l.info.fd, POLLIN, 0});
      polled_listeners.push_back(&l);
    }
    const size_t first_backend = fds.size();
    const std::vector<Backend*> polled_backends = watched_;
    for (Backend* b : polled_backends) fds.push_back({b->fd(), POLLOUT, 0});  // -1 (gone): skipped
    const uint64_t wait_ns = NextTimer(now) - now;
    const int timeout_ms =
        static_cast<int>(std::min<uint64_t>((wait_ns + 999'999) / 1'000'000, 1000));
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) break;
    Tick();
    if (fds[0].revents & POLLIN) {
      uint64_t value;
      (void)!::read(fds[0].fd, &value, sizeof(value));
    }
    PickUpTable();
    fds_freed_ = false;
    if (registration && fds[1].revents != 0) ReceiveRegistered();
    for (size_t i = 0; i < polled_listeners.size(); ++i) {
      if (fds[first_listener + i].revents != 0) AcceptSome(*polled_listeners[i]);
    }
    for (size_t i = 0; i < polled_backends.size(); ++i) {
      Backend* b = polled_backends[i];
      // A backend that went away has no socket to watch: look again now.
      if (fds[first_backend + i].revents == 0 && b->fd() >= 0) continue;
      watched_.erase(std::find(watched_.begin(), watched_.end(), b));
      scheduler_->OnWritable(b);
    }
    DeliverResults();
    scheduler_->RunTimers();
    DeliverResults();
    ResumeWhenSlotsFree();
    backends_.CloseRetired();
    RefillFdReserve();
  }
}

bool SyncWorker::Polled(const Listener& l, uint64_t now) const {
  return l.state.MayAccept(!slots_paused_, fds_freed_, now);
}

uint64_t SyncWorker::NextTimer(uint64_t now) const {
  uint64_t next = scheduler_->NextTimer(now, kIdleWakeNs);
  for (const Listener& l : listeners_) {
    next = l.state.NextRetry(now, next);
  }
  return next;
}

void SyncWorker::AcceptSome(Listener& l) {
  const bool want_remote = router_.needs_remote();
  for (int n = 0; n < kAcceptsPerTurn && !slots_paused_; ++n) {
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    const int fd = ::accept4(l.info.fd, want_remote ? reinterpret_cast<sockaddr*>(&ss) : nullptr,
                             want_remote ? &len : nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (IsResourceShortage(errno)) {
        // The connection stays queued; this listener waits for one of ours
        // to leave (or shortly), the others go on.
        if (l.state.Starved(now_ns())) Bump(stats_->accept_resource_pauses);
      } else {
        Bump(stats_->accept_errors);
      }
      return;
    }
    l.state.Accepted();
    auto remote = want_remote ? SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len)
                              : std::nullopt;
    TakeConnection(fd, &l.info, remote ? &*remote : nullptr);
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
    TakeConnection(fd->Release(), nullptr, nullptr);
    return;
  }
  if (fd.error() == EAGAIN || fd.error() == EINTR) return;
  RegistrationEnded(fd.error() == ENOLINK ? 0 : fd.error());
  control_->RequestStop();
}

void SyncWorker::StartSend(uint32_t slot, int conn_fd, Backend* b, bool /*keep_open: never*/) {
  if (std::find(failed_.begin(), failed_.end(), b) != failed_.end()) {
    results_.emplace_back(slot, -ECANCELED);
    return;
  }
  SysStatus sent = SendFd(b->fd(), conn_fd, MSG_DONTWAIT);
  if (sent.ok()) {
    Bump(stats_->messages);
    CloseConnection(conn_fd);
    results_.emplace_back(slot, 1);
    return;
  }
  failed_.push_back(b);
  results_.emplace_back(slot, -sent.error());
}

void SyncWorker::DeliverResults() {
  while (!results_.empty()) {
    std::vector<std::pair<uint32_t, int>> batch;
    batch.swap(results_);
    failed_.clear();
    for (const auto& [slot, res] : batch) scheduler_->OnSendResult(slot, res);
  }
}

void SyncWorker::CloseConnection(int fd) {
  fds_freed_ = true;
  ::close(fd);
}

void SyncWorker::WatchWritable(Backend* b) { watched_.push_back(b); }

void SyncWorker::ForcedPeerGone() { control_->RequestExit(11); }

}  // namespace sbx
