#include "engine/dispatch/stats.h"

#include "engine/core/str_cat.h"

namespace sbx {
namespace {

uint64_t Load(const Counter& c) { return c.load(std::memory_order_relaxed); }

void AppendWorker(std::string* out, const std::vector<const WorkerStats*>& parts) {
  auto sum = [&](auto field) {
    uint64_t total = 0;
    for (const WorkerStats* w : parts) total += Load(w->*field);
    return total;
  };
  StrAppend(out, " accepted=", sum(&WorkerStats::accepted),
            " dispatched=", sum(&WorkerStats::dispatched));
  uint64_t dropped_total = 0;
  std::string reasons;
  for (int r = 0; r < static_cast<int>(DropReason::kCount); ++r) {
    uint64_t n = 0;
    for (const WorkerStats* w : parts) n += Load(w->dropped[r]);
    dropped_total += n;
    StrAppend(&reasons, " dropped.", DropReasonName(static_cast<DropReason>(r)), "=", n);
  }
  StrAppend(
      out, " dropped=", dropped_total, reasons, " accept_errors=", sum(&WorkerStats::accept_errors),
      " accept_resource_pauses=", sum(&WorkerStats::accept_resource_pauses),
      " accept_slot_pauses=", sum(&WorkerStats::accept_slot_pauses),
      " getsockname=", sum(&WorkerStats::getsockname_calls),
      " getpeername=", sum(&WorkerStats::getpeername_calls),
      " uring_enter=", sum(&WorkerStats::uring_enters),
      " close_errors=", sum(&WorkerStats::close_errors), " messages=", sum(&WorkerStats::messages),
      " redelivered=", sum(&WorkerStats::redelivered),
      " unconfirmed=", sum(&WorkerStats::unconfirmed));
}

}  // namespace

const char* DropReasonName(DropReason reason) {
  switch (reason) {
    case DropReason::kNoDecision:
      return "no_decision";
    case DropReason::kFail:
      return "fail";
    case DropReason::kBackendDown:
      return "backend_down";
    case DropReason::kTimeout:
      return "timeout";
    case DropReason::kSendError:
      return "send_error";
    case DropReason::kOverload:
      return "overload";
    case DropReason::kBackendLost:
      return "backend_lost";
    case DropReason::kSocketError:
      return "socket_error";
    case DropReason::kResources:
      return "resources";
    case DropReason::kCount:
      break;
  }
  return "?";
}

uint64_t WorkerStats::TotalDropped() const {
  uint64_t total = 0;
  for (const Counter& c : dropped) total += Load(c);
  return total;
}

StatsRegistry::StatsRegistry(int workers) {
  for (int i = 0; i < workers; ++i) workers_.push_back(std::make_unique<WorkerStats>());
}

Counter* StatsRegistry::BackendCounter(std::string_view backend) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = backends_.find(backend);
  if (it == backends_.end()) {
    it = backends_.emplace(std::string(backend), std::make_unique<Counter>(0)).first;
  }
  return it->second.get();
}

std::vector<std::pair<std::string, uint64_t>> StatsRegistry::BackendDeliveries() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& [path, counter] : backends_) out.emplace_back(path, Load(*counter));
  return out;
}

std::string StatsRegistry::Format() const {
  std::string out;
  std::vector<const WorkerStats*> all;
  for (size_t i = 0; i < workers_.size(); ++i) {
    StrAppend(&out, "stats worker=", i);
    AppendWorker(&out, {workers_[i].get()});
    out += '\n';
    all.push_back(workers_[i].get());
  }
  out += "stats total";
  AppendWorker(&out, all);
  out += '\n';
  for (const auto& [path, delivered] : BackendDeliveries()) {
    StrAppend(&out, "stats backend ", path, " delivered=", delivered, "\n");
  }
  if (std::optional<KernelDispatchCounts> k = KernelCounts()) {
    uint64_t steered = 0;
    for (const auto& b : k->backends) steered += b.steered;
    StrAppend(&out, "stats kernel steered=", steered,
              " passed.not_ours=", k->program[SBX_COUNT_NOT_OURS],
              " passed.to_engine=", k->program[SBX_COUNT_TO_ENGINE],
              " passed.no_listener=", k->program[SBX_COUNT_NO_LISTENER],
              " passed.assign_failed=", k->program[SBX_COUNT_ASSIGN_FAILED],
              " refused.guarded=", k->program[SBX_COUNT_GUARDED], " listeners.granted=", k->granted,
              " requests.refused=", k->refused, " reclaimed=", k->reclaimed,
              " reclaim_failed=", k->reclaim_failed, " reply_channels.granted=", k->reply_channels,
              " replies.relayed=", k->relayed, " replies.unknown_sender=", k->relay_unknown, "\n");
    for (const auto& b : k->backends) {
      StrAppend(&out, "stats backend ", b.path, " steered=", b.steered,
                b.attended ? " listener=taken" : " listener=unattended", "\n");
    }
  }
  return out;
}

}  // namespace sbx
