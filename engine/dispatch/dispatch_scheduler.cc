#include "engine/dispatch/dispatch_scheduler.h"

#include <algorithm>

#include "engine/dispatch/send_result.h"

namespace sbx {
namespace {

// Messages released by one writability watch: about what a default backend
// queue (net.unix.max_dgram_qlen = 10) takes before it is full again. A
// receiver that takes several fds per message gets that many times more
// connections per burst, or a backlog would drain one message per turn.
constexpr uint32_t kPumpBurst = 16;
// A down backend is looked at again no sooner than this.
constexpr uint64_t kMinRetryNs = 1'000'000;
// An acknowledging receiver that holds connections of ours and has been
// silent this long is probed (is its socket still there?); the silence
// allowed doubles with every probe it survives, up to the bound.
constexpr uint64_t kFirstProbeNs = 20'000'000;
constexpr uint64_t kMaxProbeNs = 1'000'000'000;
// A connection held this long without an ack from a receiver that is
// still there is released as dispatched, and counted as unconfirmed (a
// receiver that lost its count, e.g. restarted on an inherited socket).
constexpr uint64_t kAckTimeoutNs = 5'000'000'000;

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
  DispatchState& d = b->dispatch;
  if (d.occupied >= config_.backend_share && !d.held.empty()) {
    // Past its share, and holding connections it has but did not confirm:
    // the oldest gives its slot and our fd up (it can no longer be sent
    // again). Connections that wait (a backend that does not read) are
    // bounded by their deadline instead: refusing them would drop what an
    // honest but slow backend, alone, could still take.
    const uint32_t oldest = d.held.front();
    d.held.pop_front();
    Release(oldest, /*confirmed=*/false);
  }
  if (free_.empty()) {
    stats_->Drop(DropReason::kOverload);
    transport_->CloseConnection(fd);
    return;
  }
  const uint32_t i = free_.back();
  free_.pop_back();
  ++d.occupied;
  const uint64_t now = clock_();
  slots_[i] = Slot{fd, b, now + config_.timeout_ns};
  // Behind others already waiting for this backend, in order.
  if (!d.waiting.empty() || d.congested || (b->down && !backends_->TryReconnect(b, now))) {
    Wait(i, /*returned=*/false);
    return;
  }
  if (b->receiver.max_fds > 1) {
    // Sent at the end of the turn with the others for this backend: the
    // connections of one batch of completions arrive interleaved over the
    // backends, and sent at once they would pack only by chance.
    if (b->dispatch.ready.empty()) readying_.push_back(b);
    b->dispatch.ready.push_back(i);
    return;
  }
  StartSend(i);
}

void DispatchScheduler::SendReady() {
  for (Backend* b : readying_) {
    DispatchState& d = b->dispatch;
    // Swapped with an empty scratch list that keeps its capacity, so that
    // no turn allocates.
    std::vector<uint32_t>& ready = sending_;
    ready.swap(d.ready);
    for (const uint32_t i : ready) {
      // The backend may have filled up or gone meanwhile: then in line.
      if (!d.waiting.empty() || d.congested || b->down) {
        Wait(i, /*returned=*/false);
      } else {
        StartSend(i);
      }
    }
    ready.clear();
  }
  readying_.clear();
}

void DispatchScheduler::StartSend(uint32_t i) {
  Slot& s = slots_[i];
  ++s.backend->dispatch.in_flight;
  s.keep_open = s.backend->receiver.acks;
  s.generation = s.backend->generation;
  transport_->StartSend(i, s.conn_fd, s.backend, s.keep_open);
}

void DispatchScheduler::OnSendResult(uint32_t i, int res) {
  Slot& s = slots_[i];
  Backend* b = s.backend;
  DispatchState& d = b->dispatch;
  --d.in_flight;
  const uint64_t now = clock_();
  switch (ClassifySend(res, b->reconnectable())) {
    case SendOutcome::kDelivered:
      ++b->receiver.fds_sent;
      ++d.last_burst_ok;
      if (s.keep_open) {
        Hold(i, now);
        return;
      }
      Bump(stats_->dispatched);
      Bump(*b->delivered);
      Free(i);  // the transport closes our copy
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
      // A result from a socket already replaced says nothing of the new one.
      if (s.generation == b->generation) LoseReceiver(b, -res, now);
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
  // only: send twice as many as went through last time (at least one), up
  // to a burst. The rest go out on later turns (NextTimer says "now" while
  // a writable backend has connections waiting).
  DispatchState& d = b->dispatch;
  const uint32_t most = kPumpBurst * std::max<uint32_t>(1, b->receiver.max_fds);
  const uint32_t burst = std::clamp(2 * d.last_burst_ok, 1u, most);
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
  SendReady();
  const uint64_t now = clock_();
  CheckHolding(now);  // before the waiting: a lost receiver's connections wait again
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
  if (!readying_.empty()) return now;
  uint64_t next = now + idle_wake;
  for (const Backend* b : listed_) {
    const DispatchState& d = b->dispatch;
    if (b->down) next = std::min(next, std::max(b->retry_at_ns, now + kMinRetryNs));
    if (!d.congested && !b->down) return now;  // more to pump
    if (!d.waiting.empty()) next = std::min(next, slots_[d.waiting.front()].deadline_ns);
  }
  for (const Backend* b : holding_) {
    if (b->dispatch.held.empty()) return now;  // to be taken off the list
    // A down backend is not probed (its socket is gone): only the ack timeout.
    if (!b->down) next = std::min(next, b->receiver.last_heard_ns + b->receiver.probe_after_ns);
    const Slot& front = slots_[b->dispatch.held.front()];
    next = std::min(next, HeldUntil(front.sent_ns, front.deadline_ns));
  }
  return std::max(next, now);
}

void DispatchScheduler::Hold(uint32_t i, uint64_t now) {
  Slot& s = slots_[i];
  Backend* b = s.backend;
  s.seq = b->receiver.fds_sent - 1;
  s.sent_ns = now;
  // Its ack may have been read before this send's result (answers are
  // handled first in a batch of completions); and a hello may have said
  // meanwhile that no ack will come.
  if (s.seq < b->receiver.fds_acked || !b->receiver.acks) {
    Release(i, /*confirmed=*/b->receiver.acks);
    return;
  }
  DispatchState& d = b->dispatch;
  if (d.held.empty()) {
    b->receiver.last_heard_ns = now;  // the silence counts from here
    b->receiver.probe_after_ns = kFirstProbeNs;
  }
  if (!d.holding) {
    d.holding = true;
    holding_.push_back(b);
  }
  d.held.push_back(i);
  // Past its share (what waited for it was sent meanwhile): the oldest held
  // ones give their slots up, as at Dispatch.
  while (d.occupied > config_.backend_share && !d.held.empty()) {
    const uint32_t oldest = d.held.front();
    d.held.pop_front();
    Release(oldest, /*confirmed=*/false);
  }
}

uint64_t DispatchScheduler::HeldUntil(uint64_t sent_ns, uint64_t deadline_ns) const {
  // The deadline set at accept bounds the hold too (shutdown and upgrades
  // wait for held connections); without one (--dispatch-timeout 0), the
  // ack timeout alone.
  const uint64_t ack_due = sent_ns + kAckTimeoutNs;
  return config_.timeout_ns == 0 ? ack_due : std::min(ack_due, deadline_ns);
}

void DispatchScheduler::Release(uint32_t i, bool confirmed) {
  Slot& s = slots_[i];
  Bump(stats_->dispatched);
  Bump(*s.backend->delivered);
  if (!confirmed) Bump(stats_->unconfirmed);
  transport_->CloseConnection(s.conn_fd);  // the receiver has its own copy
  Free(i);
}

void DispatchScheduler::Free(uint32_t i) {
  --slots_[i].backend->dispatch.occupied;
  slots_[i] = Slot{};
  free_.push_back(i);
}

void DispatchScheduler::ReleaseHeld(Backend* b, bool confirmed) {
  DispatchState& d = b->dispatch;
  while (!d.held.empty()) {
    const uint32_t i = d.held.front();
    d.held.pop_front();
    Release(i, confirmed);
  }
}

void DispatchScheduler::OnReceiverMessage(Backend* b, const ReceiverMessage& m) {
  ReceiverState& r = b->receiver;
  r.last_heard_ns = clock_();
  r.probe_after_ns = kFirstProbeNs;
  if (m.kind == ReceiverMessageKind::kHello) {
    r.max_fds = std::min(m.max_fds, config_.fds_per_message);
    const bool had_acks = r.acks;
    r.acks = m.acks;
    // A receiver that no longer acknowledges (another program on the same
    // socket): what we hold for it will never be confirmed.
    if (had_acks && !r.acks) ReleaseHeld(b, /*confirmed=*/false);
    return;
  }
  // Acks count fds taken from the queue, which is FIFO: the first
  // fds_acked fds sent on this socket have been taken.
  r.fds_acked += m.count;
  DispatchState& d = b->dispatch;
  while (!d.held.empty() && slots_[d.held.front()].seq < r.fds_acked) {
    const uint32_t i = d.held.front();
    d.held.pop_front();
    Release(i, /*confirmed=*/true);
  }
}

void DispatchScheduler::LoseReceiver(Backend* b, int err, uint64_t now) {
  // Acks still queued on the old socket are read first: what they confirm
  // was taken, and must not be sent twice.
  finished_.clear();
  transport_->FinishReceiver(b, &finished_);
  for (const ReceiverMessage& m : finished_) OnReceiverMessage(b, m);
  backends_->MarkDown(b, err, now);
  DispatchState& d = b->dispatch;
  d.congested = false;
  b->receiver = ReceiverState{};  // the next socket has a receiver of its own
  // The rest went down with the receiver's queue: send them again to
  // whoever binds the path next, within what is left of their deadline
  // (never a fresh one: a receiver that re-binds its path again and again
  // would otherwise hold them for ever).
  std::deque<uint32_t> lost;
  lost.swap(d.held);
  uint64_t redelivered = 0;
  for (const uint32_t i : lost) {
    Slot& s = slots_[i];
    s.keep_open = false;
    if (config_.timeout_ns == 0 || s.deadline_ns <= now) {
      Drop(i, DropReason::kBackendLost);
      continue;
    }
    Bump(stats_->redelivered);
    ++redelivered;
    Wait(i, /*returned=*/true);
  }
  backends_->LogRedelivery(b, redelivered, now);
}

void DispatchScheduler::CheckHolding(uint64_t now) {
  for (size_t t = 0; t < holding_.size();) {
    Backend* b = holding_[t];
    DispatchState& d = b->dispatch;
    ReceiverState& r = b->receiver;
    if (!d.held.empty() && !b->down && now - r.last_heard_ns >= r.probe_after_ns) {
      // Silent while holding ours: is its socket still there? A full
      // queue (EAGAIN) says it is.
      const int res = transport_->Probe(b);
      if (ClassifySend(res, b->reconnectable()) == SendOutcome::kBackendGone) {
        LoseReceiver(b, -res, now);
      } else {
        r.last_heard_ns = now;
        r.probe_after_ns = std::clamp(r.probe_after_ns * 2, kFirstProbeNs, kMaxProbeNs);
      }
    }
    while (!d.held.empty() &&
           now >= HeldUntil(slots_[d.held.front()].sent_ns, slots_[d.held.front()].deadline_ns)) {
      const uint32_t i = d.held.front();
      d.held.pop_front();
      Release(i, /*confirmed=*/false);
    }
    if (d.held.empty()) {
      d.holding = false;
      holding_[t] = holding_.back();
      holding_.pop_back();
    } else {
      ++t;
    }
  }
}

void DispatchScheduler::Drop(uint32_t i, DropReason reason) {
  stats_->Drop(reason);
  transport_->CloseConnection(slots_[i].conn_fd);
  Free(i);
}

size_t DispatchScheduler::held() const {
  size_t n = 0;
  for (const Backend* b : holding_) n += b->dispatch.held.size();
  return n;
}

size_t DispatchScheduler::waiting() const {
  size_t n = 0;
  for (const Backend* b : listed_) n += b->dispatch.waiting.size();
  return n;
}

}  // namespace sbx
