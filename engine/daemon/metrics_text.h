// The daemon's counters in Prometheus's text exposition format (0.0.4):
// what --metrics-listen serves. Per-worker counters carry a worker label;
// deliveries carry the backend's configured path (before -U substitution).
#ifndef SBX_ENGINE_DAEMON_METRICS_TEXT_H_
#define SBX_ENGINE_DAEMON_METRICS_TEXT_H_

#include <string>
#include <string_view>

#include "engine/dispatch/stats.h"

namespace sbx {

std::string PrometheusText(const StatsRegistry& stats);

// A label value with \, " and newline escaped as the format requires.
std::string EscapeLabelValue(std::string_view value);

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_METRICS_TEXT_H_
