// ListenerState: when a listener of either worker may accept.
#include "engine/dispatch/listener_state.h"

#include "gtest/gtest.h"

namespace sbx {
namespace {

constexpr uint64_t kNow = 1'000'000'000;
constexpr uint64_t kPause = ListenerState::kStarvedPauseNs;
constexpr uint64_t kLater = kNow + 10 * kPause;

TEST(ListenerStateTest, AcceptingUnlessTheWorkerIsClosed) {
  ListenerState s;
  EXPECT_EQ(s.phase(), ListenerState::Phase::kAccepting);
  EXPECT_TRUE(s.MayAccept(/*worker_open=*/true, /*fd_freed=*/false, kNow));
  EXPECT_FALSE(s.MayAccept(/*worker_open=*/false, /*fd_freed=*/true, kNow));
  EXPECT_EQ(s.NextRetry(kNow, kLater), kLater);  // nothing to wait for
}

TEST(ListenerStateTest, StarvedWaitsForAFreedFdOrThePause) {
  ListenerState s;
  EXPECT_TRUE(s.Starved(kNow));  // a pause to count
  EXPECT_EQ(s.phase(), ListenerState::Phase::kStarved);
  EXPECT_FALSE(s.MayAccept(true, false, kNow));
  EXPECT_FALSE(s.MayAccept(true, false, kNow + kPause - 1));
  EXPECT_TRUE(s.MayAccept(true, true, kNow));  // one of ours left: its fd is free
  EXPECT_TRUE(s.MayAccept(true, false, kNow + kPause));
  EXPECT_FALSE(s.MayAccept(false, true, kNow + kPause));  // the worker's state comes first
  EXPECT_EQ(s.NextRetry(kNow, kLater), kNow + kPause);
  EXPECT_EQ(s.NextRetry(kNow, kNow + 1), kNow + 1);       // an earlier timer stays
  EXPECT_EQ(s.NextRetry(kNow + kPause, kLater), kLater);  // the pause is over
}

TEST(ListenerStateTest, StarvedAgainIsOnePauseAndMovesItsEnd) {
  ListenerState s;
  EXPECT_TRUE(s.Starved(kNow));
  EXPECT_FALSE(s.Starved(kNow + kPause));  // still the same pause: not counted again
  EXPECT_FALSE(s.MayAccept(true, false, kNow + kPause));
  EXPECT_EQ(s.NextRetry(kNow + kPause, kLater), kNow + 2 * kPause);
}

TEST(ListenerStateTest, AnAcceptedConnectionEndsThePause) {
  ListenerState s;
  s.Starved(kNow);
  s.Accepted();
  EXPECT_EQ(s.phase(), ListenerState::Phase::kAccepting);
  EXPECT_TRUE(s.MayAccept(true, false, kNow));
  EXPECT_TRUE(s.Starved(kNow + 1));  // a new pause, counted
}

}  // namespace
}  // namespace sbx
