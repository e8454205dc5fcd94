// The Prometheus text of the daemon's counters: names, labels, escaping.
#include "engine/daemon/metrics_text.h"

#include <string>

#include "gtest/gtest.h"

namespace sbx {
namespace {

TEST(MetricsTextTest, EscapesLabelValues) {
  EXPECT_EQ(EscapeLabelValue("/run/a.sock"), "/run/a.sock");
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(MetricsTextTest, CountersPerWorkerBackendAndReloads) {
  StatsRegistry stats(2);
  Bump(stats.worker(0).accepted, 3);
  Bump(stats.worker(1).accepted, 4);
  Bump(stats.worker(1).dispatched, 4);
  stats.worker(0).Drop(DropReason::kTimeout);
  Bump(*stats.BackendCounter("/run/x\"y.sock"), 4);
  Bump(stats.reloads);
  const std::string text = PrometheusText(stats);
  for (const char* line : {
           "# TYPE socketbox_accepted_total counter\n",
           "socketbox_accepted_total{worker=\"0\"} 3\n",
           "socketbox_accepted_total{worker=\"1\"} 4\n",
           "socketbox_dispatched_total{worker=\"1\"} 4\n",
           "socketbox_dropped_total{worker=\"0\",reason=\"timeout\"} 1\n",
           "socketbox_dropped_total{worker=\"1\",reason=\"timeout\"} 0\n",
           "socketbox_backend_delivered_total{backend=\"/run/x\\\"y.sock\"} 4\n",
           "socketbox_config_reloads_total 1\n",
           "socketbox_config_reload_failures_total 0\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
  // Every family is declared once, before its samples.
  EXPECT_EQ(text.find("# TYPE socketbox_accepted_total"),
            text.rfind("# TYPE socketbox_accepted_total"));
  EXPECT_LT(text.find("# TYPE socketbox_dropped_total"), text.find("socketbox_dropped_total{"));
}

}  // namespace
}  // namespace sbx
