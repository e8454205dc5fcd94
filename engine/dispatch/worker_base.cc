#include "engine/dispatch/worker_base.h"

#include <netinet/in.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "engine/sys/clock.h"
#include "engine/sys/socket_ops.h"

namespace sbx {

WorkerBase::WorkerBase(const WorkerConfig& config, WorkerSetup setup, Control* control,
                       StatsRegistry* stats)
    : config_(config),
      setup_(std::move(setup)),
      control_(control),
      stats_(&stats->worker(setup_.index)),
      backends_(stats, kMaxSubstitutedBackends, setup_.fd_reserve),
      router_(config, stats_, &backends_) {}

bool WorkerBase::PickUpTable() {
  const uint64_t generation = control_->generation();
  if (generation == seen_generation_) return false;
  seen_generation_ = generation;
  router_.SetTable(control_->Current());
  return true;
}

void WorkerBase::MakeScheduler(DispatchTransport* transport) {
  transport_ = transport;
  DispatchScheduler::Config config;
  config.slots = kDispatchSlots;
  config.timeout_ns = static_cast<uint64_t>(config_.dispatch_timeout_ms) * 1'000'000;
  config.forced_fd = config_.forced_fd.has_value();
  // Only a worker that reads receivers' answers can pack fds or hold them.
  config.fds_per_message =
      backends_.receiver_replies() ? static_cast<uint16_t>(config_.fds_per_message) : 1;
  config.backend_share = BackendShare();
  scheduler_ = std::make_unique<DispatchScheduler>(config, transport, &backends_, stats_,
                                                   [this] { return now_ns_; });
}

uint32_t WorkerBase::BackendShare() const {
  rlimit limit{};
  uint64_t fds = kDispatchSlots;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    fds = limit.rlim_cur / static_cast<uint64_t>(std::max(setup_.workers, 1));
  }
  const uint64_t share = std::min<uint64_t>(kDispatchSlots, fds) / kBackendShareDivisor;
  return static_cast<uint32_t>(std::max<uint64_t>(share, kMinBackendShare));
}

bool WorkerBase::TakeConnection(int fd, const ListenerInfo* listener, const SocketAddress* remote) {
  Backend* backend = Admit(fd, listener, remote);
  if (backend == nullptr) {
    transport_->CloseConnection(fd);
    return false;
  }
  scheduler_->Dispatch(fd, backend);
  if (slots_paused_ || scheduler_->free_slots() >= kDispatchSlotsLowWater) return false;
  // Let the kernel's backlog hold new connections until slots free up.
  slots_paused_ = true;
  Bump(stats_->accept_slot_pauses);
  return true;
}

void WorkerBase::ResumeWhenSlotsFree() {
  if (slots_paused_ && scheduler_->free_slots() > kDispatchSlotsHighWater) slots_paused_ = false;
}

Backend* WorkerBase::Admit(int fd, const ListenerInfo* listener, const SocketAddress* remote) {
  Bump(stats_->accepted);
  if (config_.clear_transparent && !SetIntOption(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, 0).ok()) {
    stats_->Drop(DropReason::kSocketError);
    return nullptr;
  }
  DropReason reason = DropReason::kNoDecision;
  Backend* backend = router_.Route(fd, listener, remote, now_ns_, &reason);
  if (backend == nullptr) stats_->Drop(reason);
  return backend;
}

void WorkerBase::RegistrationEnded(int err) {
  if (err == 0) {
    std::fprintf(stderr, "socketbox: registration server went away; exiting\n");
    control_->RequestExit(0);
  } else {
    std::fprintf(stderr, "socketbox: receiving from the registration server: %s; exiting\n",
                 std::strerror(err));
    control_->RequestExit(1);
  }
}

}  // namespace sbx
