// The start-up probe tries each io_uring feature for real; on this project's
// kernels (6.1+) the whole fast path must be found. FastPathUsable() asks for
// exactly what the io_uring worker uses: each required feature, taken away
// alone, turns it off; the features the design does not use do not.
#include "engine/sys/kernel_probe.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sbx {
namespace {

TEST(KernelProbeTest, FindsTheFastPath) {
  const KernelFeatures f = ProbeKernelFeatures();
  if (!f.io_uring) GTEST_SKIP() << "io_uring is not available here (disabled or too old)";
  EXPECT_TRUE(f.single_issuer) << f.Summary();
  EXPECT_TRUE(f.multishot_accept) << f.Summary();
  EXPECT_TRUE(f.sendmsg && f.close && f.submit_wait_timeout) << f.Summary();
  EXPECT_TRUE(f.FastPathUsable());
  EXPECT_THAT(f.Summary(), ::testing::HasSubstr("multishot-accept=yes"));
}

KernelFeatures AllFound() {
  KernelFeatures f;
  f.io_uring = f.single_issuer = f.multishot_accept = f.sendmsg = f.close = f.recvmsg = true;
  f.link_timeout = f.submit_wait_timeout = f.uring_getsockname = true;
  return f;
}

struct FeatureCase {
  const char* name;
  bool KernelFeatures::*feature;
  bool required;
};

TEST(KernelProbeTest, FastPathNeedsExactlyWhatTheWorkerUses) {
  const FeatureCase cases[] = {
      {"io_uring", &KernelFeatures::io_uring, true},
      {"single_issuer", &KernelFeatures::single_issuer, true},  // the worker's Init requires it
      {"multishot_accept", &KernelFeatures::multishot_accept, true},
      {"sendmsg", &KernelFeatures::sendmsg, true},
      {"close", &KernelFeatures::close, true},
      {"submit_wait_timeout", &KernelFeatures::submit_wait_timeout, true},
      {"link_timeout", &KernelFeatures::link_timeout, false},  // no send waits in the kernel
      {"recvmsg", &KernelFeatures::recvmsg, false},
      {"uring_getsockname", &KernelFeatures::uring_getsockname, false},
  };
  ASSERT_TRUE(AllFound().FastPathUsable());
  for (const FeatureCase& c : cases) {
    KernelFeatures f = AllFound();
    f.*c.feature = false;
    EXPECT_EQ(f.FastPathUsable(), !c.required) << "without " << c.name;
  }
}

}  // namespace
}  // namespace sbx
