// WorkerRing's count of io_uring_enter calls on a real ring: the stats
// line's uring_enter (and enters per connection in the benchmarks) is this
// counter, so it must count the system calls made, no more and no fewer.
#include "engine/dispatch/worker_ring.h"

#include <liburing.h>

#include "gtest/gtest.h"

namespace sbx {
namespace {

constexpr uint64_t kMillisecond = 1'000'000;

class WorkerRingTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(ring_.Init(8, 16, 0), 0); }
  void TearDown() override { EXPECT_EQ(failures_, 0); }
  void PrepareNop() { io_uring_prep_nop(ring_.Get()); }
  uint64_t enters() const { return enters_.load(); }

  Counter enters_{0};
  int failures_ = 0;
  WorkerRing ring_{&enters_, [this](int) { ++failures_; }};
};

TEST_F(WorkerRingTest, ASubmissionWithNothingPreparedEntersNothing) {
  EXPECT_TRUE(ring_.Submit());
  ring_.Flush();
  EXPECT_EQ(enters(), 0u);
}

TEST_F(WorkerRingTest, EachSubmissionOfPreparedEntriesCountsOnce) {
  PrepareNop();
  PrepareNop();
  EXPECT_TRUE(ring_.Submit());
  EXPECT_EQ(enters(), 1u);
  PrepareNop();
  ring_.Flush();  // the last submission before the ring goes counts too
  EXPECT_EQ(enters(), 2u);
}

TEST_F(WorkerRingTest, AWaitAlwaysEnters) {
  ring_.SubmitAndWait(1, kMillisecond, 0);  // nothing to wait for: times out
  EXPECT_EQ(enters(), 1u);
  PrepareNop();
  ring_.SubmitAndWait(1, 100 * kMillisecond, 0);
  EXPECT_EQ(enters(), 2u);
  EXPECT_EQ(ring_.Ready(), 1u);
}

TEST_F(WorkerRingTest, AFullQueueIsSubmittedOnceToMakeRoom) {
  for (int i = 0; i < 8; ++i) PrepareNop();
  EXPECT_EQ(enters(), 0u);
  PrepareNop();  // the ninth: the eight go first
  EXPECT_EQ(enters(), 1u);
  ring_.RunLinked();  // submits the ninth, runs nothing linked
  EXPECT_EQ(enters(), 2u);
}

}  // namespace
}  // namespace sbx
