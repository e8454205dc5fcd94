// Ring on the real kernel: submissions, completions, and the min-wait.
#include "engine/sys/ring.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <vector>

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

TEST_F(RingTest, WaitsWithoutTimeout) {
  Nops(1);
  EXPECT_EQ(ring_.SubmitAndWait(1, kNoTimeout, 0), 1);
  EXPECT_EQ(Reap(ring_), 1u);
}

TEST_F(RingTest, GetSqeOrSubmitHandsAFullQueueOver) {
  Nops(8);
  const uint64_t enters = ring_.enter_calls();
  io_uring_sqe* sqe = ring_.GetSqeOrSubmit();
  ASSERT_NE(sqe, nullptr);
  EXPECT_EQ(ring_.enter_calls(), enters + 1);
  EXPECT_EQ(ring_.SpaceLeft(), 7u);
  io_uring_prep_nop(sqe);
  // The 8 went in on their own: only the ninth is left to submit.
  EXPECT_EQ(ring_.SubmitAndWait(9, kSecond, 0), 1);
  EXPECT_EQ(Reap(ring_), 9u);
  // With room left it takes a free entry and enters nothing.
  ASSERT_NE(ring_.GetSqeOrSubmit(), nullptr);
  EXPECT_EQ(ring_.enter_calls(), enters + 2);
}

TEST_F(RingTest, MakeRoomForSubmitsOnlyWhenShort) {
  Nops(6);
  const uint64_t enters = ring_.enter_calls();
  EXPECT_TRUE(ring_.MakeRoomFor(2));
  EXPECT_EQ(ring_.enter_calls(), enters);  // 2 were free
  Nops(1);
  EXPECT_TRUE(ring_.MakeRoomFor(2));
  EXPECT_EQ(ring_.enter_calls(), enters + 1);
  EXPECT_EQ(ring_.SpaceLeft(), 8u);
  EXPECT_FALSE(ring_.MakeRoomFor(9));  // more than the queue holds
  EXPECT_EQ(ring_.SubmitAndWait(7, kSecond, 0), 0);
  EXPECT_EQ(Reap(ring_), 7u);
}

TEST_F(RingTest, ForEachCompletionSeesThoseItsHandlerCauses) {
  for (uint64_t i = 1; i <= 3; ++i) {
    io_uring_sqe* sqe = ring_.GetSqe();
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, i);
  }
  ASSERT_EQ(ring_.SubmitAndWait(3, kSecond, 0), 3);
  std::vector<uint64_t> seen;
  const unsigned n = ring_.ForEachCompletion([&](const io_uring_cqe* cqe) {
    seen.push_back(cqe->user_data);
    if (cqe->user_data == 1) {  // a NOP completes within its submission
      io_uring_sqe* sqe = ring_.GetSqe();
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, 4);
      ring_.Submit();
    }
  });
  EXPECT_EQ(n, 4u);
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(ring_.Ready(), 0u);
}

TEST_F(RingTest, EnterCallsCountsOnlyRealEnters) {
  const uint64_t enters = ring_.enter_calls();
  EXPECT_EQ(ring_.Submit(), 0);  // nothing prepared: no system call
  EXPECT_EQ(ring_.enter_calls(), enters);
  Nops(2);
  EXPECT_EQ(ring_.Submit(), 2);
  EXPECT_EQ(ring_.SubmitAndWait(2, kSecond, 0), 0);
  EXPECT_EQ(ring_.enter_calls(), enters + 2);
  EXPECT_EQ(Reap(ring_), 2u);
}

TEST(RingInitTest, FallsBackWhenTheKernelRefusesTheFlags) {
  // A setup flag no kernel knows: refused with EINVAL, like DEFER_TASKRUN
  // before Linux 6.1.
  constexpr unsigned kUnknownFlag = 1U << 31;
  constexpr unsigned kFallback = IORING_SETUP_SINGLE_ISSUER;
  {
    Ring refused;
    const int err = refused.Init(8, 64, kUnknownFlag);
    if (err == -ENOSYS || err == -EPERM) GTEST_SKIP() << "no io_uring here: " << err;
    ASSERT_EQ(err, -EINVAL);
  }
  Ring ring;
  ASSERT_EQ(ring.InitWithFallback(8, 64, kUnknownFlag | kFallback, kFallback), 0);
  EXPECT_EQ(ring.get()->flags, kFallback | IORING_SETUP_CQSIZE);
  io_uring_prep_nop(ring.GetSqe());
  EXPECT_EQ(ring.SubmitAndWait(1, kSecond, 0), 1);
  EXPECT_EQ(Reap(ring), 1u);
}

TEST(RingInitTest, KeepsTheFlagsTheKernelTakes) {
  // Refused with the fallback flags too (zero entries): the error comes back.
  Ring never;
  EXPECT_EQ(never.InitWithFallback(0, 64, IORING_SETUP_SINGLE_ISSUER, 0), -EINVAL);
  Ring taken;
  const int err = taken.InitWithFallback(8, 64, IORING_SETUP_SINGLE_ISSUER, 0);
  if (err == -ENOSYS || err == -EPERM) GTEST_SKIP() << "no io_uring here: " << err;
  ASSERT_EQ(err, 0);
  EXPECT_EQ(taken.get()->flags, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE);
}

// Chains as the engine builds them: a request that posts a completion, then
// 16 hard-linked CLOSEs that post none.
class LinkedChainTest : public ::testing::Test {
 protected:
  static constexpr int kClosesPerChain = 16;

  void SetUp() override {
    const int err = ring_.Init(256, 512, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    if (err == -ENOSYS || err == -EPERM) GTEST_SKIP() << "no io_uring here: " << err;
    ASSERT_EQ(err, 0);
  }
  void TearDown() override {
    // Those a failed test left open (nothing else here opens fds, so a
    // number still open is one of ours).
    for (int fd : fds_) {
      if (::fcntl(fd, F_GETFD) >= 0) ::close(fd);
    }
    for (int fd : pipes_) ::close(fd);
  }
  void PrepareChains(int chains) {
    for (int c = 0; c < chains; ++c) {
      io_uring_sqe* head = ring_.GetSqe();
      io_uring_prep_nop(head);
      head->flags |= IOSQE_IO_HARDLINK;
      for (int i = 0; i < kClosesPerChain; ++i) {
        const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        fds_.push_back(fd);
        io_uring_sqe* close = ring_.GetSqe();
        io_uring_prep_close(close, fd);
        close->flags |= IOSQE_CQE_SKIP_SUCCESS;
        if (i + 1 < kClosesPerChain) close->flags |= IOSQE_IO_HARDLINK;
      }
    }
  }
  // Requests in flight whose completions come as deferred work, as
  // accepts and receives do: `n` reads, each on a pipe, made ready.
  void ReadsMadeReady(int n) {
    for (int i = 0; i < n; ++i) {
      int p[2];
      ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
      pipes_.push_back(p[0]);
      pipes_.push_back(p[1]);
      io_uring_prep_read(ring_.GetSqe(), p[0], &byte_, 1, 0);
    }
    ASSERT_EQ(ring_.Submit(), n);
    for (size_t i = 0; i < pipes_.size(); i += 2) ASSERT_EQ(::write(pipes_[i + 1], "x", 1), 1);
  }
  int StillOpen() {
    int open = 0;
    for (int fd : fds_) open += ::fcntl(fd, F_GETFD) >= 0;
    return open;
  }
  Ring ring_;
  std::vector<int> fds_;
  std::vector<int> pipes_;
  char byte_ = 0;
};

TEST_F(LinkedChainTest, RunsLinkedChainsToTheEndWithoutWaiting) {
  constexpr int kChains = 4;
  ASSERT_NO_FATAL_FAILURE(PrepareChains(kChains));
  const uint64_t start = MonotonicNs();
  const int rc = ring_.SubmitAndRunLinked(kChains * kClosesPerChain + kChains);
  const uint64_t took = MonotonicNs() - start;
  EXPECT_EQ(rc, kChains * (1 + kClosesPerChain));
  EXPECT_EQ(StillOpen(), 0) << "of " << fds_.size();
  EXPECT_EQ(Reap(ring_), static_cast<unsigned>(kChains));  // the heads'
  EXPECT_LT(took, kSecond / 2);
}

TEST_F(LinkedChainTest, RequestsInFlightCountAgainstTheBound) {
  // The kernel stops once it has run `bound` pieces of deferred work and
  // the queue holds `bound` completions, whoever they are for. Asked for the
  // linked requests only, 24 reads completing meanwhile end the enter early
  // (printed: kernels differ); a bound that covers them runs everything.
  // (The worker covers only the completions already there: covering the
  // requests in flight costs a timer on every such enter, RunLinked.)
  ASSERT_NO_FATAL_FAILURE(ReadsMadeReady(24));
  ASSERT_NO_FATAL_FAILURE(PrepareChains(1));
  ASSERT_GE(ring_.SubmitAndRunLinked(kClosesPerChain), 0);
  std::printf("bound = linked requests only: %d of %zu closes not yet run\n", StillOpen(),
              fds_.size());
  ASSERT_GE(ring_.SubmitAndRunLinked(kClosesPerChain + ring_.Ready() + 1), 0);  // the rest
  EXPECT_EQ(StillOpen(), 0);
  Reap(ring_);
  TearDown();
  fds_.clear();
  pipes_.clear();
  // The linked requests, the completions ready, one per request in flight.
  ASSERT_NO_FATAL_FAILURE(ReadsMadeReady(24));
  ASSERT_NO_FATAL_FAILURE(PrepareChains(1));
  ASSERT_GE(ring_.SubmitAndRunLinked(kClosesPerChain + ring_.Ready() + 24 + 1), 0);
  EXPECT_EQ(StillOpen(), 0) << "of " << fds_.size();
  EXPECT_EQ(Reap(ring_), 25u);
}

TEST_F(LinkedChainTest, AWaitThatFindsCompletionsLeavesLinksForLater) {
  // What SubmitAndRunLinked is for, as this kernel does it: a wait for one
  // completion returns once the heads posted theirs, with most closes not
  // yet run (6.18 here). Printed, not asserted: older kernels may run it all.
  constexpr int kChains = 4;
  ASSERT_NO_FATAL_FAILURE(PrepareChains(kChains));
  ASSERT_GE(ring_.SubmitAndWait(1, kSecond, 0), 0);
  std::printf("after a wait for 1 completion: %d of %zu linked closes not yet run\n", StillOpen(),
              fds_.size());
  Reap(ring_);
  const int rc = ring_.SubmitAndRunLinked(kChains * kClosesPerChain + kChains);
  EXPECT_TRUE(rc == 0 || rc == -ETIME) << rc;
  EXPECT_EQ(StillOpen(), 0);
}

TEST_F(LinkedChainTest, NothingLinkedReturnsAtOnce) {
  const uint64_t start = MonotonicNs();
  EXPECT_EQ(ring_.SubmitAndRunLinked(8), -ETIME);
  EXPECT_LT(MonotonicNs() - start, kSecond / 2);
}

}  // namespace
}  // namespace sbx
