#include "inetd/child_table.h"

#include <gtest/gtest.h>

namespace sbx::inetd {
namespace {

TEST(ChildTable, UnlimitedByDefault) {
  ChildTable table(0, 0);
  for (pid_t pid = 1; pid <= 1000; ++pid) table.Add(pid, "192.0.2.1");
  EXPECT_TRUE(table.HasRoom());
  EXPECT_TRUE(table.SourceHasRoom("192.0.2.1"));
  EXPECT_EQ(table.CountFor("192.0.2.1"), 1000u);
}

TEST(ChildTable, GlobalLimitFreesSlotsOnRemove) {
  ChildTable table(2, 0);
  table.Add(10, "a");
  EXPECT_TRUE(table.HasRoom());
  table.Add(11, "b");
  EXPECT_FALSE(table.HasRoom());
  EXPECT_TRUE(table.Remove(10));
  EXPECT_TRUE(table.HasRoom());
  EXPECT_EQ(table.size(), 1u);
}

TEST(ChildTable, PerSourceLimitCountsEachSource) {
  ChildTable table(0, 2);
  table.Add(1, "2001:db8::1");
  table.Add(2, "2001:db8::1");
  table.Add(3, "2001:db8::2");
  EXPECT_FALSE(table.SourceHasRoom("2001:db8::1"));
  EXPECT_TRUE(table.SourceHasRoom("2001:db8::2"));
  // Sources without a key (AF_UNIX peers) are never limited.
  table.Add(4, "");
  table.Add(5, "");
  EXPECT_TRUE(table.SourceHasRoom(""));
  EXPECT_TRUE(table.Remove(1));
  EXPECT_TRUE(table.SourceHasRoom("2001:db8::1"));
  EXPECT_TRUE(table.Remove(2));
  EXPECT_EQ(table.CountFor("2001:db8::1"), 0u);
}

TEST(ChildTable, UnknownPidIsNotOurs) {
  ChildTable table(1, 1);
  table.Add(7, "x");
  EXPECT_FALSE(table.Remove(8));  // e.g. a reparented grandchild
  EXPECT_FALSE(table.HasRoom());
  EXPECT_TRUE(table.Remove(7));
  EXPECT_FALSE(table.Remove(7));
  EXPECT_TRUE(table.HasRoom());
}

}  // namespace
}  // namespace sbx::inetd
