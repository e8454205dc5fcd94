// BackendTable: connecting on first use, backoff, retiring sockets, the fd
// reserve, with real receiving sockets.
#include "engine/dispatch/backend_table.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/daemon_test_support.h"

namespace sbx {
namespace {

constexpr uint64_t kMs = 1'000'000;

class BackendTableTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  StatsRegistry stats_{1};
  uint64_t now_ = 1'000'000'000;
};

TEST_F(BackendTableTest, ConnectsOnFirstUseAndCountsUnderTheConfiguredPath) {
  UniqueFd receiver = testing::BindReceiver(dir_.File("a-00080"));
  BackendTable table(&stats_, 16);
  Backend* b = table.ForPath(dir_.File("a-00080"), dir_.File("a-#//P_"), now_);
  EXPECT_FALSE(b->down);
  EXPECT_GE(b->fd(), 0);
  EXPECT_TRUE(b->reconnectable());
  EXPECT_EQ(table.ForPath(dir_.File("a-00080"), dir_.File("a-#//P_"), now_), b);
  Bump(*b->delivered);
  const auto deliveries = stats_.BackendDeliveries();
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_EQ(deliveries[0].first, dir_.File("a-#//P_"));
}

TEST_F(BackendTableTest, MissingBackendIsRetriedWithDoublingBackoff) {
  BackendTable table(&stats_, 16);
  Backend* b = table.ForPath(dir_.File("none"), dir_.File("none"), now_);
  EXPECT_TRUE(b->down);
  EXPECT_EQ(b->last_error, ENOENT);
  const struct {
    uint64_t after_ms;
    bool retried;
    uint32_t backoff_ms;
  } steps[] = {{10, false, 20}, {20, true, 40}, {50, false, 40}, {60, true, 80}};
  const uint64_t start = now_;
  for (const auto& step : steps) {
    EXPECT_FALSE(table.TryReconnect(b, start + step.after_ms * kMs));
    EXPECT_EQ(b->backoff_ms, step.backoff_ms) << "after " << step.after_ms << " ms";
  }
  UniqueFd receiver = testing::BindReceiver(dir_.File("none"));
  EXPECT_TRUE(table.TryReconnect(b, start + 140 * kMs));
  EXPECT_FALSE(b->down);
  EXPECT_EQ(b->backoff_ms, 0u);
}

TEST_F(BackendTableTest, MarkDownRetiresTheSocketAndRetriesAtOnce) {
  UniqueFd receiver = testing::BindReceiver(dir_.File("a"));
  BackendTable table(&stats_, 16);
  Backend* b = table.ForPath(dir_.File("a"), dir_.File("a"), now_);
  const int old_fd = b->fd();
  table.MarkDown(b, ECONNREFUSED, now_);
  EXPECT_TRUE(b->down);
  EXPECT_EQ(b->fd(), -1);
  EXPECT_TRUE(testing::IsOpen(old_fd));  // a prepared send may still name it
  table.CloseRetired();
  EXPECT_FALSE(testing::IsOpen(old_fd));
  EXPECT_TRUE(table.TryReconnect(b, now_));  // a restarted backend is usually back at once
}

TEST_F(BackendTableTest, RedeliveryIsLoggedWithPathAndCountAtMostOnceASecond) {
  UniqueFd receiver = testing::BindReceiver(dir_.File("r"));
  BackendTable table(&stats_, 16);
  Backend* b = table.ForPath(dir_.File("r"), dir_.File("r"), now_);
  auto logged = [&](uint64_t count, uint64_t at_ms) {
    ::testing::internal::CaptureStderr();
    table.LogRedelivery(b, count, now_ + at_ms * kMs);
    return ::testing::internal::GetCapturedStderr();
  };
  const std::string line = " connection(s) its receiver had not taken are sent again";
  EXPECT_EQ(logged(0, 0), "");  // nothing sent again: nothing said
  EXPECT_NE(logged(5, 0).find("backend " + dir_.File("r") + ": 5" + line), std::string::npos);
  // A backend that re-binds in a loop: the next second's line counts them all.
  EXPECT_EQ(logged(3, 300), "");
  EXPECT_EQ(logged(4, 600), "");
  EXPECT_NE(logged(1, 1000).find(": 8" + line), std::string::npos);
  EXPECT_EQ(logged(0, 3000), "");
}

TEST_F(BackendTableTest, BorrowedFdIsNeverClosedOrMarkedDown) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair), 0);
  {
    BackendTable table(&stats_, 16);
    Backend* b = table.ForFd(pair[0]);
    EXPECT_FALSE(b->reconnectable());
    table.MarkDown(b, EPIPE, now_);
    EXPECT_FALSE(b->down);
    EXPECT_EQ(b->fd(), pair[0]);
  }
  EXPECT_TRUE(testing::IsOpen(pair[0]));
  ::close(pair[0]);
  ::close(pair[1]);
}

// Fills the fd table up to a lowered soft limit, as accepted connections
// would, and restores both at the end.
class FullFdTable {
 public:
  FullFdTable() {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit low = saved_;
    low.rlim_cur = 256;
    ::setrlimit(RLIMIT_NOFILE, &low);
  }
  void Fill() {
    for (int fd; (fd = ::dup(0)) >= 0;) held_.push_back(fd);
  }
  ~FullFdTable() {
    for (int fd : held_) ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &saved_);
  }

 private:
  rlimit saved_{};
  std::vector<int> held_;
};

TEST_F(BackendTableTest, OwnFdShortageUsesTheReserveInsteadOfBlamingTheBackend) {
  UniqueFd receiver = testing::BindReceiver(dir_.File("a"));
  FullFdTable full;
  FdReserve reserve(2);
  ASSERT_EQ(reserve.held(), 2);
  full.Fill();
  BackendTable table(&stats_, 16, &reserve);
  Backend* b = table.ForPath(dir_.File("a"), dir_.File("a"), now_);
  EXPECT_FALSE(b->down) << "errno " << b->last_error;
  EXPECT_EQ(reserve.held(), 1);
}

TEST_F(BackendTableTest, OwnFdShortageWithoutReserveIsRetriedSoonWithoutBackoff) {
  UniqueFd receiver = testing::BindReceiver(dir_.File("a"));
  FullFdTable full;
  full.Fill();
  BackendTable table(&stats_, 16);
  Backend* b = table.ForPath(dir_.File("a"), dir_.File("a"), now_);
  EXPECT_TRUE(b->down);
  EXPECT_EQ(b->last_error, EMFILE);
  EXPECT_EQ(b->backoff_ms, 0u);
  EXPECT_LE(b->retry_at_ns, now_ + 1 * kMs);
}

TEST_F(BackendTableTest, ReserveRefillsWhenFdsAreFreeAgain) {
  FdReserve reserve(3);
  EXPECT_EQ(reserve.held(), 3);
  int fd;
  {
    FullFdTable full;
    full.Fill();
    fd = reserve.Open([] { return ::dup(0); });
    EXPECT_GE(fd, 0);
    EXPECT_EQ(reserve.held(), 2);
    reserve.Refill();  // still full: nothing to take back
    EXPECT_EQ(reserve.held(), 2);
  }
  ::close(fd);
  reserve.Refill();
  EXPECT_EQ(reserve.held(), 3);
}

TEST(FdReserveTest, ReserveScalesWithTheLimit) {
  EXPECT_EQ(ReserveFor(40), 5);
  EXPECT_EQ(ReserveFor(16), 4);
  EXPECT_EQ(ReserveFor(1024), 32);
  EXPECT_EQ(ReserveFor(1 << 20), 32);
}

}  // namespace
}  // namespace sbx
