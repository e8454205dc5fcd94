#include "engine/daemon/metrics_text.h"

#include "engine/core/str_cat.h"

namespace sbx {
namespace {

uint64_t Load(const Counter& c) { return c.load(std::memory_order_relaxed); }

void Header(std::string* out, std::string_view name, std::string_view help) {
  StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " counter\n");
}

// One counter family with a sample per worker.
void PerWorker(std::string* out, const StatsRegistry& stats, std::string_view name,
               std::string_view help, Counter WorkerStats::*field) {
  Header(out, name, help);
  for (int w = 0; w < stats.worker_count(); ++w) {
    StrAppend(out, name, "{worker=\"", w, "\"} ", Load(stats.worker(w).*field), "\n");
  }
}

}  // namespace

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string PrometheusText(const StatsRegistry& stats) {
  std::string out;
  PerWorker(&out, stats, "socketbox_accepted_total",
            "Connections accepted (or received in -P mode).", &WorkerStats::accepted);
  PerWorker(&out, stats, "socketbox_dispatched_total", "Connections handed to a backend.",
            &WorkerStats::dispatched);
  Header(&out, "socketbox_dropped_total", "Connections closed without a backend, by reason.");
  for (int w = 0; w < stats.worker_count(); ++w) {
    const WorkerStats& ws = stats.worker(w);
    for (int r = 0; r < static_cast<int>(DropReason::kCount); ++r) {
      StrAppend(&out, "socketbox_dropped_total{worker=\"", w, "\",reason=\"",
                DropReasonName(static_cast<DropReason>(r)), "\"} ", Load(ws.dropped[r]), "\n");
    }
  }
  PerWorker(&out, stats, "socketbox_accept_errors_total",
            "Transient accept errors, counted and survived.", &WorkerStats::accept_errors);
  PerWorker(&out, stats, "socketbox_accept_resource_pauses_total",
            "Listener pauses after accept ran out of fds or memory.",
            &WorkerStats::accept_resource_pauses);
  PerWorker(&out, stats, "socketbox_accept_slot_pauses_total",
            "Accepting paused because dispatch slots ran low.", &WorkerStats::accept_slot_pauses);
  PerWorker(&out, stats, "socketbox_getsockname_calls_total",
            "getsockname(2) calls made to classify connections.", &WorkerStats::getsockname_calls);
  PerWorker(&out, stats, "socketbox_getpeername_calls_total",
            "getpeername(2) calls made to classify connections.", &WorkerStats::getpeername_calls);
  PerWorker(&out, stats, "socketbox_uring_enter_calls_total", "io_uring_enter(2) calls.",
            &WorkerStats::uring_enters);
  PerWorker(&out, stats, "socketbox_close_errors_total", "Failed closes of passed connections.",
            &WorkerStats::close_errors);
  PerWorker(&out, stats, "socketbox_messages_total",
            "fd messages sent (several connections each to receivers that take them).",
            &WorkerStats::messages);
  PerWorker(&out, stats, "socketbox_redelivered_total",
            "Connections sent again after an acknowledging receiver lost them.",
            &WorkerStats::redelivered);
  PerWorker(&out, stats, "socketbox_unconfirmed_total",
            "Connections held for an acknowledgement that never came.", &WorkerStats::unconfirmed);
  Header(&out, "socketbox_backend_delivered_total",
         "Connections delivered per backend (configured path).");
  for (const auto& [path, delivered] : stats.BackendDeliveries()) {
    StrAppend(&out, "socketbox_backend_delivered_total{backend=\"", EscapeLabelValue(path), "\"} ",
              delivered, "\n");
  }
  if (std::optional<KernelDispatchCounts> k = stats.KernelCounts()) {
    Header(&out, "socketbox_kernel_steered_total",
           "Connections the kernel put straight into a backend's listener, per backend.");
    for (const auto& b : k->backends) {
      StrAppend(&out, "socketbox_kernel_steered_total{backend=\"", EscapeLabelValue(b.path), "\"} ",
                b.steered, "\n");
    }
    Header(&out, "socketbox_kernel_passed_total",
           "Connections the kernel program left to the ordinary lookup, by reason.");
    const char* const reasons[] = {"not_ours", "to_engine", "no_listener", "assign_failed"};
    for (int r = 0; r < 4; ++r) {
      StrAppend(&out, "socketbox_kernel_passed_total{reason=\"", reasons[r], "\"} ", k->program[r],
                "\n");
    }
    Header(&out, "socketbox_kernel_guarded_total",
           "Connections refused for reaching a steering listener's own port.");
    StrAppend(&out, "socketbox_kernel_guarded_total ", k->program[SBX_COUNT_GUARDED], "\n");
    Header(&out, "socketbox_kernel_listeners_granted_total", "Listeners handed to receivers.");
    StrAppend(&out, "socketbox_kernel_listeners_granted_total ", k->granted, "\n");
    Header(&out, "socketbox_kernel_requests_refused_total",
           "Listener requests refused (not a backend's socket, or malformed).");
    StrAppend(&out, "socketbox_kernel_requests_refused_total ", k->refused, "\n");
    Header(&out, "socketbox_kernel_reclaimed_total",
           "Connections queued in an unattended listener that the engine sent on itself.");
    StrAppend(&out, "socketbox_kernel_reclaimed_total ", k->reclaimed, "\n");
    Header(&out, "socketbox_kernel_reclaim_failed_total",
           "Connections queued in an unattended listener that could not be sent on (closed).");
    StrAppend(&out, "socketbox_kernel_reclaim_failed_total ", k->reclaim_failed, "\n");
    Header(&out, "socketbox_kernel_reply_channels_granted_total",
           "Channels granted alone, for receivers that answer across network namespaces.");
    StrAppend(&out, "socketbox_kernel_reply_channels_granted_total ", k->reply_channels, "\n");
    Header(&out, "socketbox_kernel_replies_relayed_total",
           "Receivers' hellos and acks that came over a channel, by whether a sending socket "
           "of this daemon had the name they answered.");
    StrAppend(&out, "socketbox_kernel_replies_relayed_total{sender=\"known\"} ", k->relayed, "\n");
    StrAppend(&out, "socketbox_kernel_replies_relayed_total{sender=\"unknown\"} ", k->relay_unknown,
              "\n");
  }
  Header(&out, "socketbox_config_reloads_total",
         "Configuration reloads (SIGHUP) that took effect.");
  StrAppend(&out, "socketbox_config_reloads_total ", Load(stats.reloads), "\n");
  Header(&out, "socketbox_config_reload_failures_total",
         "Reloads refused (the running configuration was kept).");
  StrAppend(&out, "socketbox_config_reload_failures_total ", Load(stats.reload_failures), "\n");
  return out;
}

}  // namespace sbx
