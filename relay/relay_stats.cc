#include "relay/relay_stats.h"

#include "engine/core/str_cat.h"

namespace sbx::relay {
namespace {

void Header(std::string* out, std::string_view name, std::string_view type, std::string_view help) {
  StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

void PerWorker(std::string* out, const RelayStats& stats, std::string_view name,
               std::string_view type, std::string_view help, Counter RelayWorkerStats::*field) {
  Header(out, name, type, help);
  for (int w = 0; w < stats.worker_count(); ++w) {
    StrAppend(out, name, "{worker=\"", w, "\"} ", Load(stats.worker(w).*field), "\n");
  }
}

}  // namespace

const char* CloseReasonName(CloseReason reason) {
  switch (reason) {
    case CloseReason::kCompleted:
      return "completed";
    case CloseReason::kClientReset:
      return "client_reset";
    case CloseReason::kTargetReset:
      return "target_reset";
    case CloseReason::kTargetRefused:
      return "target_refused";
    case CloseReason::kTargetUnreachable:
      return "target_unreachable";
    case CloseReason::kConnectTimeout:
      return "connect_timeout";
    case CloseReason::kIdleTimeout:
      return "idle_timeout";
    case CloseReason::kProxyTargetClosed:
      return "proxy_target_closed";
    case CloseReason::kNotConnected:
      return "not_connected";
    case CloseReason::kNat64Refused:
      return "nat64_refused";
    case CloseReason::kUnixRefused:
      return "unix_refused";
    case CloseReason::kNoResources:
      return "no_resources";
    case CloseReason::kDrained:
      return "drained";
    case CloseReason::kCount:
      break;
  }
  return "unknown";
}

RelayStats::RelayStats(int workers) {
  for (int i = 0; i < workers; ++i) workers_.push_back(std::make_unique<RelayWorkerStats>());
}

std::string RelayStats::PrometheusText() const {
  std::string out;
  PerWorker(&out, *this, "socketbox_relay_accepted_total", "counter",
            "Connections taken from the source.", &RelayWorkerStats::accepted);
  PerWorker(&out, *this, "socketbox_relay_active_connections", "gauge", "Connections open now.",
            &RelayWorkerStats::active);
  Header(&out, "socketbox_relay_closed_total", "counter", "Connections closed, by reason.");
  for (int w = 0; w < worker_count(); ++w) {
    for (int r = 0; r < static_cast<int>(CloseReason::kCount); ++r) {
      StrAppend(&out, "socketbox_relay_closed_total{worker=\"", w, "\",reason=\"",
                CloseReasonName(static_cast<CloseReason>(r)), "\"} ", Load(worker(w).closed[r]),
                "\n");
    }
  }
  Header(&out, "socketbox_relay_bytes_total", "counter", "Bytes relayed, by direction.");
  for (int w = 0; w < worker_count(); ++w) {
    StrAppend(&out, "socketbox_relay_bytes_total{worker=\"", w, "\",direction=\"to_target\"} ",
              Load(worker(w).bytes_to_target), "\n");
    StrAppend(&out, "socketbox_relay_bytes_total{worker=\"", w, "\",direction=\"to_client\"} ",
              Load(worker(w).bytes_to_client), "\n");
  }
  PerWorker(&out, *this, "socketbox_relay_source_errors_total", "counter",
            "Accept or receive errors, counted and survived.", &RelayWorkerStats::source_errors);
  PerWorker(&out, *this, "socketbox_relay_source_pauses_total", "counter",
            "Source pauses for lack of fds or connection slots.", &RelayWorkerStats::source_pauses);
  PerWorker(&out, *this, "socketbox_relay_uring_enter_calls_total", "counter",
            "io_uring_enter(2) calls.", &RelayWorkerStats::uring_enters);
  return out;
}

std::string RelayStats::Summary() const {
  uint64_t accepted = 0, active = 0, to_target = 0, to_client = 0, errors = 0;
  std::array<uint64_t, static_cast<int>(CloseReason::kCount)> closed{};
  for (const auto& w : workers_) {
    accepted += Load(w->accepted);
    active += Load(w->active);
    to_target += Load(w->bytes_to_target);
    to_client += Load(w->bytes_to_client);
    errors += Load(w->source_errors);
    for (size_t r = 0; r < closed.size(); ++r) closed[r] += Load(w->closed[r]);
  }
  std::string out =
      StrCat("stats accepted=", accepted, " active=", active, " bytes_to_target=", to_target,
             " bytes_to_client=", to_client, " source_errors=", errors);
  for (size_t r = 0; r < closed.size(); ++r) {
    StrAppend(&out, " closed.", CloseReasonName(static_cast<CloseReason>(r)), "=", closed[r]);
  }
  return out;
}

}  // namespace sbx::relay
