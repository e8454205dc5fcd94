#include "engine/tools/route_tester.h"

#include <sstream>

#include "engine/core/config_loader.h"
#include "gtest/gtest.h"

namespace sbx {
namespace {

TEST(RouteTesterTest, OneLinePerTupleWithErrorsInPlace) {
  auto loaded = LoadConfigText(
      "max-rules:2\nrule-set:0 size:4\nip:2001:db8::1 jump-unix:/run/sb/#//7_-#//P_.sock\n"
      "ip:::ffff:192.0.2.1 jump-fd:9\nport:9 jump-rule:1\nport:10 jump-rule:5\n"
      "rule-set:1 size:1\ndefault fail\n",
      "t.conf");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::istringstream in(
      "2001:db8::1 80 2001:db8::99 40000\n"
      "# comment\n"
      "\n"
      "192.0.2.1 80 198.51.100.7 1\n"
      "::ffff:192.0.2.1 80 ::1 1\n"
      "::2 9 ::1 1\n"
      "::2 10 ::1 1\n"
      "::2 11 ::1 1\n"
      "::2 x ::1 1\n"
      "::2 1 ::1\n"
      "zz 1 ::1 1\n"
      "::2 1 ::1 70000\n");
  std::ostringstream out;
  EXPECT_EQ(RunRouteTester(*loaded->table, in, out, /*substitute=*/false), 4);
  EXPECT_EQ(
      out.str(),
      "jump-unix:/run/sb/#//7_-#//P_.sock\n"
      "jump-fd:9\n"
      "jump-fd:9\n"
      "fail\n"
      "none\n"
      "fail\n"
      "error: line 9: bad local port 'x'\n"
      "error: line 10: expected 4 fields (LOCAL_ADDR LOCAL_PORT REMOTE_ADDR REMOTE_PORT), got 3\n"
      "error: line 11: bad local address 'zz'\n"
      "error: line 12: bad remote port '70000'\n");
  std::istringstream again("2001:db8::1 80 2001:db8::99 40000\n");
  std::ostringstream substituted;
  EXPECT_EQ(RunRouteTester(*loaded->table, again, substituted, /*substitute=*/true), 0);
  EXPECT_EQ(substituted.str(), "jump-unix:/run/sb/00001-00080.sock\n");
}

}  // namespace
}  // namespace sbx
