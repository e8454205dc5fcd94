#include "engine/daemon/dispatch_scheduler.h"

#include <algorithm>

#include "engine/daemon/send_result.h"

namespace sbx {
namespace {

// Sends released by one writability watch: about what a default backend
// queue (net.unix.max_dgram_qlen = 10) takes before it is full again.
constexpr uint32_t kPumpBurst = 16;
// A down backend is looked at again no sooner than this.
constexpr uint64_t kMinRetryNs = 1'000'000;

}  // namespace

DispatchScheduler::DispatchScheduler(const Config& config, DispatchTransport* transport,
                                     BackendTable* backends, WorkerStats* stats, Clock clock)
    : config_(config),
      transport_(transport),
      backends_(backends),
      stats_(stats),
      clock_(std::move(clock)),
      slots_(std::make_unique<Slot[]>(config.slots)) {
  free_.reserve(config.slots);
  for (uint32_t i = config.slots; i > 0; --i) free_.push_back(i - 1);
}

void DispatchScheduler::Dispatch(int fd, Backend* b) {
  if (free_.empty()) {
    stats_->Drop(DropReason::kOverload);
    transport_->CloseConnection(fd);
    return;
  }
  const uint32_t i = free_.back();
  free_.pop_back();
  const uint64_t now = clock_();
  slots_[i] = Slot{fd, b, now + config_.timeout_ns};
  const DispatchState& d = b->dispatch;
  // Behind others already waiting for this backend, in order.
  if (!d.waiting.empty() || d.congested || (b->down && !backends_->TryReconnect(b, now))) {
    Wait(i, /*returned=*/false);
    return;
  }
  StartSend(i);
}

void DispatchScheduler::StartSend(uint32_t i) {
  Slot& s = slots_[i];
  ++s.backend->dispatch.in_flight;
  transport_->StartSend(i, s.conn_fd, s.backend);
}

void DispatchScheduler::OnSendResult(uint32_t i, int res) {
  Slot& s = slots_[i];
  Backend* b = s.backend;
  DispatchState& d = b->dispatch;
  --d.in_flight;
  const uint64_t now = clock_();
  switch (ClassifySend(res, b->reconnectable())) {
    case SendOutcome::kDelivered:
      Bump(stats_->dispatched);
      Bump(*b->delivered);
      ++d.last_burst_ok;
      s = Slot{};
      free_.push_back(i);  // the transport closes our copy
      return;
    case SendOutcome::kNotTried:
      // An earlier send of the same chain failed, and its result decides
      // about the backend. This one was not tried: back in line.
      Wait(i, /*returned=*/true);
      return;
    case SendOutcome::kQueueFull:
      if (config_.timeout_ns == 0 || now >= s.deadline_ns) {
        Drop(i, DropReason::kTimeout);
        return;
      }
      d.congested = true;
      Wait(i, /*returned=*/true);
      if (!d.watch_armed) {
        d.watch_armed = true;
        transport_->WatchWritable(b);
      }
      return;
    case SendOutcome::kBackendGone:
      backends_->MarkDown(b, -res, now);
      d.congested = false;
      if (now < s.deadline_ns) {
        Wait(i, /*returned=*/true);
      } else {
        Drop(i, DropReason::kBackendDown);
      }
      return;
    case SendOutcome::kFailed:
      backends_->LogTrouble(b, "send failed", -res, now);
      Drop(i, DropReason::kSendError);
      if (config_.forced_fd && IsBackendGone(-res)) transport_->ForcedPeerGone();
      return;
  }
}

void DispatchScheduler::Wait(uint32_t i, bool returned) {
  Slot& s = slots_[i];
  DispatchState& d = s.backend->dispatch;
  if (returned) {
    // A send that came back goes before every later dispatch (deadlines
    // follow dispatch order) and after those that came back before it.
    auto at = d.waiting.begin();
    while (at != d.waiting.end() && slots_[*at].deadline_ns <= s.deadline_ns) ++at;
    d.waiting.insert(at, i);
  } else {
    d.waiting.push_back(i);
  }
  if (!d.listed) {
    d.listed = true;
    listed_.push_back(s.backend);
  }
}

void DispatchScheduler::OnWritable(Backend* b) {
  b->dispatch.watch_armed = false;
  b->dispatch.congested = false;
  Pump(b, clock_());
}

void DispatchScheduler::Pump(Backend* b, uint64_t now) {
  // After a writability watch fires the queue may have room for one or two
  // only: send about as many as went through last time, plus one, up to a
  // burst. The rest go out on later turns (NextTimer says "now" while a
  // writable backend has connections waiting).
  DispatchState& d = b->dispatch;
  const uint32_t burst = std::clamp(d.last_burst_ok + 1, 1u, kPumpBurst);
  d.last_burst_ok = 0;
  uint32_t sent = 0;
  while (!d.waiting.empty() && !b->down && !d.congested && sent < burst) {
    const uint32_t i = d.waiting.front();
    d.waiting.pop_front();
    if (slots_[i].deadline_ns <= now) {
      Drop(i, DropReason::kTimeout);
      continue;
    }
    StartSend(i);
    ++sent;
  }
}

DropReason DispatchScheduler::ExpiryReason(const Backend* b) const {
  if (!b->down) return DropReason::kTimeout;
  // The daemon's own lack of fds is not the backend's fault.
  return IsResourceShortage(b->last_error) ? DropReason::kResources : DropReason::kBackendDown;
}

void DispatchScheduler::RunTimers() {
  const uint64_t now = clock_();
  for (size_t t = 0; t < listed_.size();) {
    Backend* b = listed_[t];
    DispatchState& d = b->dispatch;
    // Waiting connections past their deadline are closed and counted.
    while (!d.waiting.empty() && slots_[d.waiting.front()].deadline_ns <= now) {
      const uint32_t i = d.waiting.front();
      d.waiting.pop_front();
      Drop(i, ExpiryReason(b));
    }
    if (!d.waiting.empty() && (!b->down || backends_->TryReconnect(b, now))) Pump(b, now);
    if (d.waiting.empty()) {
      Unlist(t);  // from here on the table may evict b when idle
    } else {
      ++t;
    }
  }
}

void DispatchScheduler::Unlist(size_t t) {
  listed_[t]->dispatch.listed = false;
  listed_[t] = listed_.back();
  listed_.pop_back();
}

uint64_t DispatchScheduler::NextTimer(uint64_t now, uint64_t idle_wake) const {
  uint64_t next = now + idle_wake;
  for (const Backend* b : listed_) {
    const DispatchState& d = b->dispatch;
    if (b->down) next = std::min(next, std::max(b->retry_at_ns, now + kMinRetryNs));
    if (!d.congested && !b->down) return now;  // more to pump
    if (!d.waiting.empty()) next = std::min(next, slots_[d.waiting.front()].deadline_ns);
  }
  return std::max(next, now);
}

void DispatchScheduler::Drop(uint32_t i, DropReason reason) {
  stats_->Drop(reason);
  transport_->CloseConnection(slots_[i].conn_fd);
  slots_[i] = Slot{};
  free_.push_back(i);
}

size_t DispatchScheduler::waiting() const {
  size_t n = 0;
  for (const Backend* b : listed_) n += b->dispatch.waiting.size();
  return n;
}

}  // namespace sbx
