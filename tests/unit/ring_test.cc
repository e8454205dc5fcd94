// Ring on the real kernel: submissions, completions, and the min-wait.
#include "engine/sys/ring.h"

#include <cerrno>
#include <cstdio>

#include "engine/sys/clock.h"
#include "gtest/gtest.h"

namespace sbx {
namespace {

constexpr uint64_t kSecond = 1'000'000'000;

unsigned Reap(Ring& ring) {
  unsigned head, seen = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(ring.get(), head, cqe) { ++seen; }
  io_uring_cq_advance(ring.get(), seen);
  return seen;
}

class RingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const int err = ring_.Init(8, 64, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    if (err == -ENOSYS || err == -EPERM) GTEST_SKIP() << "no io_uring here: " << err;
    ASSERT_EQ(err, 0);
  }
  void Nops(int n) {
    for (int i = 0; i < n; ++i) {
      io_uring_sqe* sqe = ring_.GetSqe();
      ASSERT_NE(sqe, nullptr);
      io_uring_prep_nop(sqe);
    }
  }
  Ring ring_;
};

TEST_F(RingTest, SubmitsWhatWasPreparedAndWaitsForIt) {
  Nops(5);
  EXPECT_EQ(ring_.SubmitAndWait(5, kSecond, 0), 5);
  EXPECT_EQ(Reap(ring_), 5u);
}

TEST_F(RingTest, FullQueueIsSubmittedAndReused) {
  for (int round = 0; round < 3; ++round) {
    Nops(8);
    EXPECT_EQ(ring_.GetSqe(), nullptr);  // all 8 entries prepared
    EXPECT_EQ(ring_.SpaceLeft(), 0u);
    EXPECT_EQ(ring_.Submit(), 8);
    EXPECT_EQ(ring_.SubmitAndWait(8, kSecond, 0), 0);
    EXPECT_EQ(Reap(ring_), 8u);
  }
}

TEST_F(RingTest, NothingToReapTimesOut) {
  EXPECT_EQ(ring_.SubmitAndWait(1, kSecond / 100, 0), -ETIME);
}

TEST_F(RingTest, MinWaitReturnsWithFewerThanAskedOnceItPassed) {
  if (!ring_.has_min_wait()) GTEST_SKIP() << "kernel without IORING_FEAT_MIN_TIMEOUT (Linux 6.12)";
  Nops(1);
  const uint64_t start = MonotonicNs();
  // Asks for 32 within 5 s, with a 1 ms budget: one is there, so it returns
  // after the budget, not after the timeout.
  const int rc = ring_.SubmitAndWait(32, 5 * kSecond, 1'000'000);
  const uint64_t took = MonotonicNs() - start;
  EXPECT_GE(rc, 0);
  EXPECT_EQ(Reap(ring_), 1u);
  EXPECT_LT(took, 2 * kSecond);
  std::printf("min-wait of 1 ms with 1 of 32 completions returned after %.3f ms\n",
              static_cast<double>(took) / 1e6);
}

}  // namespace
}  // namespace sbx
