// The start-up probe tries each io_uring feature for real; on this project's
// kernels (6.1+) the whole fast path must be found.
#include "engine/sys/kernel_probe.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sbx {
namespace {

TEST(KernelProbeTest, FindsTheFastPath) {
  const KernelFeatures f = ProbeKernelFeatures();
  if (!f.io_uring) GTEST_SKIP() << "io_uring is not available here (disabled or too old)";
  EXPECT_TRUE(f.multishot_accept) << f.Summary();
  EXPECT_TRUE(f.sendmsg && f.close && f.link_timeout && f.submit_wait_timeout) << f.Summary();
  EXPECT_TRUE(f.FastPathUsable());
  EXPECT_THAT(f.Summary(), ::testing::HasSubstr("multishot-accept=yes"));
}

}  // namespace
}  // namespace sbx
