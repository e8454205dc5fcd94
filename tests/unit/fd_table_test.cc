// engine/sys/fd_table: the fd table grown ahead, and no fd left behind.
#include "engine/sys/fd_table.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "gtest/gtest.h"

namespace sbx {
namespace {

int OpenFdCount() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n - 1;  // the directory's own fd
}

TEST(FdTableTest, TargetIsTheLimitUpToACeiling) {
  EXPECT_EQ(FdTableTarget(1024), 1024);
  EXPECT_EQ(FdTableTarget(65536), 65536);
  EXPECT_EQ(FdTableTarget(1048576), 65536);
  EXPECT_EQ(FdTableTarget(RLIM_INFINITY), 65536);
}

TEST(FdTableTest, RaiseFdLimitReachesTheHardLimit) {
  const FdLimit raised = RaiseFdLimit();
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  EXPECT_EQ(raised.now, limit.rlim_cur);
  EXPECT_EQ(limit.rlim_cur, limit.rlim_max);
  EXPECT_LE(raised.before, raised.now);
}

// Run in a child: a fork's table holds only what its open fds need, so it
// is small whatever this process's grew to in another test. 0 when all
// held, else the number of the first check that failed.
int GrowInAFreshTable(int want) {
  const int before = FdTableSize();
  if (before <= 0) return 1;  // no FDSize in /proc/self/status
  if (before >= want) return 2;
  const int open_before = OpenFdCount();
  if (GrowFdTable(want) != 0) return 3;
  const int grown = FdTableSize();
  if (grown < want) return 4;
  if (OpenFdCount() != open_before) return 5;  // an fd left behind
  // Taking fds up to that size needs no growing (nor its grace period).
  for (int open = open_before; open < want; ++open) {
    if (::open("/dev/null", O_RDONLY | O_CLOEXEC) < 0) return 6;
  }
  if (FdTableSize() != grown) return 7;
  // Asking for less than the table holds changes nothing.
  if (GrowFdTable(100) != 0 || FdTableSize() != grown) return 8;
  return 0;
}

TEST(FdTableTest, GrowsOnceAndLeavesNoFdOpen) {
  const FdLimit raised = RaiseFdLimit();  // the test runner's soft limit may be 1024
  const int want = static_cast<int>(std::min<uint64_t>(4000, raised.now));
  ASSERT_GT(want, 256) << "fd limit " << raised.now << " too small for this test";
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(GrowInAFreshTable(want));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "check " << WEXITSTATUS(status) << " of GrowInAFreshTable failed";
}

TEST(FdTableTest, RefusesWhatTheLimitForbidsWithoutLeaking) {
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur >= (1u << 30)) GTEST_SKIP() << "soft RLIMIT_NOFILE too large to exceed";
  const int open_before = OpenFdCount();
  // Whatever the table holds already (the order of the tests is not fixed).
  EXPECT_EQ(GrowFdTable(static_cast<int>(limit.rlim_cur) + 1), EINVAL);
  EXPECT_EQ(GrowFdTable(0), EINVAL);
  EXPECT_EQ(OpenFdCount(), open_before);
}

TEST(FdTableTest, ForLimitReachesTheTarget) {
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  ASSERT_EQ(GrowFdTableForLimit(), 0);
  EXPECT_GE(FdTableSize(), FdTableTarget(limit.rlim_cur));
}

}  // namespace
}  // namespace sbx
