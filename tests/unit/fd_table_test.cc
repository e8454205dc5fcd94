// engine/sys/fd_table: the fd table grown ahead, and no fd left behind.
#include "engine/sys/fd_table.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

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

TEST(FdTableTest, GrowsOnceAndLeavesNoFdOpen) {
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur < 4096) GTEST_SKIP() << "soft RLIMIT_NOFILE below 4096 here";
  const int before = FdTableSize();
  ASSERT_GT(before, 0) << "no FDSize in /proc/self/status";
  const int open_before = OpenFdCount();
  ASSERT_EQ(GrowFdTable(4000), 0);
  const int grown = FdTableSize();
  EXPECT_GE(grown, 4000);
  EXPECT_EQ(OpenFdCount(), open_before);
  // Taking fds up to that size needs no growing (nor its grace period).
  std::vector<int> fds;
  while (static_cast<int>(fds.size()) < 3000) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
  }
  EXPECT_EQ(FdTableSize(), grown);
  for (int fd : fds) ::close(fd);
  // Asking for less than the table holds changes nothing.
  ASSERT_EQ(GrowFdTable(100), 0);
  EXPECT_EQ(FdTableSize(), grown);
}

TEST(FdTableTest, RefusesWhatTheLimitForbidsWithoutLeaking) {
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur > (1u << 30)) GTEST_SKIP() << "soft RLIMIT_NOFILE too large to exceed";
  const int open_before = OpenFdCount();
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
