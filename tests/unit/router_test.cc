// Router: from a connection's addresses to its backend, fetching only what
// the table reads, table-driven over a small configuration.
#include "engine/dispatch/router.h"

#include <netinet/in.h>

#include <string>

#include "engine/core/config_loader.h"
#include "gtest/gtest.h"
#include "tests/unit/daemon_test_support.h"

namespace sbx {
namespace {

class RouterTest : public ::testing::Test {
 protected:
  RouterTest() : table_(&stats_, 16) {}

  std::shared_ptr<const RouteTable> Load(const std::string& text) {
    auto loaded = LoadConfigText("max-rules:10\n" + text, "t.conf");
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded->table;
  }
  static ListenerInfo Listener(const char* ip, uint16_t port) {
    ListenerInfo l;
    l.address_known = l.port_known = true;
    l.local = SocketAddress{AF_INET6, *ParseIp6(ip, true), port, 0};
    return l;
  }
  static SocketAddress Remote(const char* ip, uint16_t port) {
    return SocketAddress{AF_INET6, *ParseIp6(ip, true), port, 0};
  }

  testing::TempDir dir_;
  WorkerConfig config_;
  StatsRegistry stats_{1};
  BackendTable table_;
};

TEST_F(RouterTest, RoutesByLocalAndRemoteWithoutAsking) {
  const std::string a = dir_.File("a"), b = dir_.File("b"), c = dir_.File("c");
  Router router(config_, &stats_.worker(0), &table_);
  router.SetTable(
      Load("rule-set:0 size:10\n"
           "ip:2001:db8::1 port:80 jump-unix:" +
           a +
           "\n"
           "rip:2001:db8:ffff::/48 jump-unix:" +
           b +
           "\n"
           "ip:2001:db8::3 fail\n"
           "ip:2001:db8::4 jump-rule:50\n"
           "default jump-unix:" +
           c + "\n"));
  EXPECT_TRUE(router.needs_local());
  EXPECT_TRUE(router.needs_remote());
  const struct {
    const char* local;
    uint16_t lport;
    const char* remote;
    std::string backend;  // empty: dropped with `reason`
    DropReason reason;
  } cases[] = {
      {"2001:db8::1", 80, "2001:db8:1::9", a, {}},
      {"2001:db8::1", 81, "2001:db8:ffff:1::9", b, {}},
      {"2001:db8::1", 81, "2001:db8:1::9", c, {}},
      {"2001:db8::3", 80, "2001:db8:1::9", "", DropReason::kFail},
      {"2001:db8::4", 80, "2001:db8:1::9", "", DropReason::kNoDecision},
  };
  for (const auto& k : cases) {
    const ListenerInfo l = Listener(k.local, k.lport);
    const SocketAddress r = Remote(k.remote, 40000);
    DropReason reason = DropReason::kCount;
    Backend* got = router.Route(-1, &l, &r, 0, &reason);  // fd -1: any syscall would fail
    if (k.backend.empty()) {
      EXPECT_EQ(got, nullptr) << k.local;
      EXPECT_EQ(reason, k.reason) << k.local;
    } else {
      ASSERT_NE(got, nullptr) << k.local;
      EXPECT_EQ(got->path, k.backend) << k.local;
    }
  }
  EXPECT_EQ(stats_.worker(0).getsockname_calls.load(), 0u);
  EXPECT_EQ(stats_.worker(0).getpeername_calls.load(), 0u);
}

TEST_F(RouterTest, AskingTheKernelOnABadFdIsASocketError) {
  Router router(config_, &stats_.worker(0), &table_);
  router.SetTable(Load("rule-set:0 size:1\nip:2001:db8::1 jump-unix:" + dir_.File("a") + "\n"));
  DropReason reason = DropReason::kCount;
  EXPECT_EQ(router.Route(-1, nullptr, nullptr, 0, &reason), nullptr);
  EXPECT_EQ(reason, DropReason::kSocketError);
  EXPECT_EQ(stats_.worker(0).getsockname_calls.load(), 1u);
}

TEST_F(RouterTest, ForcedPathIsSubstitutedPerLocalAddress) {
  config_.forced_path = dir_.File("be-#//7_-#//P_");
  config_.substitute = true;
  Router router(config_, &stats_.worker(0), &table_);
  EXPECT_TRUE(router.needs_local());
  EXPECT_FALSE(router.needs_remote());
  const ListenerInfo l = Listener("2001:db8::2001", 443);
  DropReason reason = DropReason::kCount;
  Backend* got = router.Route(-1, &l, nullptr, 0, &reason);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->path, dir_.File("be-08193-00443"));
  EXPECT_TRUE(got->substituted);
}

TEST_F(RouterTest, TableThatReadsNothingNeedsNoAddresses) {
  Router router(config_, &stats_.worker(0), &table_);
  router.SetTable(Load("rule-set:0 size:1\ndefault jump-unix:" + dir_.File("a") + "\n"));
  EXPECT_FALSE(router.needs_local());
  EXPECT_FALSE(router.needs_remote());
  DropReason reason = DropReason::kCount;
  ASSERT_NE(router.Route(-1, nullptr, nullptr, 0, &reason), nullptr);
}

}  // namespace
}  // namespace sbx
