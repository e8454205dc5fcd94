// Evaluation semantics of the compiled route table (reference §3.3).
#include "engine/core/route_table.h"

#include <string>
#include <vector>

#include "engine/core/config_loader.h"
#include "engine/core/config_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sbx {
namespace {

using ::testing::HasSubstr;

class RouteTableTest : public ::testing::Test {
 protected:
  void Load(const std::string& text) {
    auto loaded = LoadConfigText(text, "t.conf");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    table_ = loaded->table;
    warnings_ = JoinDiagnostics(loaded->warnings);
  }
  // "jump-unix:PATH", "jump-fd:N", "fail" or "none".
  std::string Route(const char* local, uint16_t lport, const char* remote = "2001:db8:ffff::1",
                    uint16_t rport = 40000) {
    const ConnTuple t{*ParseIp6(local, true), *ParseIp6(remote, true), lport, rport};
    const Action a = table_->Lookup(t);
    switch (a.kind) {
      case ActionKind::kUnix:
        return "jump-unix:" + table_->unix_paths()[a.arg];
      case ActionKind::kFd:
        return "jump-fd:" + std::to_string(a.arg);
      case ActionKind::kFail:
        return "fail";
      case ActionKind::kNone:
        return "none";
      default:
        return "jump?";
    }
  }
  std::shared_ptr<const RouteTable> table_;
  std::string warnings_;
};

TEST_F(RouteTableTest, OriginalSample) {
  Load(
      "max-maps:100\nmax-rules:100\nrule-set:0 size:100\n"
      "ip:2001:db8::1 jump-unix:test0001\nip:2001:db8::2 jump-unix:run/test2.sock\n"
      "ip:2001:db8::3 port:80 jump-fd:200\n");
  EXPECT_EQ(Route("2001:db8::1", 80), "jump-unix:test0001");
  EXPECT_EQ(Route("2001:db8::1", 12345), "jump-unix:test0001");
  EXPECT_EQ(Route("2001:db8::2", 443), "jump-unix:run/test2.sock");
  EXPECT_EQ(Route("2001:db8::3", 80), "jump-fd:200");
  EXPECT_EQ(Route("2001:db8::3", 81), "fail");
  EXPECT_EQ(Route("2001:db8::4", 80), "fail");
}

TEST_F(RouteTableTest, FirstMatchWinsWithPrefixAndMaskLiterals) {
  Load(
      "max-rules:1\nrule-set:0 size:10\n"
      "ip:2001:db8::5 jump-unix:exact\n"
      "ip:2001:db8::/64 port:443 jump-unix:tls\n"
      "ip:2001:db8::/64 jump-unix:prefix64\n"
      // every address whose last group is 7 (non-contiguous mask)
      "ip:::7/::ffff jump-unix:low7\n"
      "ip:::/0 rip:2001:db8:bad::/48 fail\n"
      "default jump-unix:other\n");
  EXPECT_EQ(Route("2001:db8::5", 443), "jump-unix:exact");
  EXPECT_EQ(Route("2001:db8::6", 443), "jump-unix:tls");
  EXPECT_EQ(Route("2001:db8::6", 80), "jump-unix:prefix64");
  EXPECT_EQ(Route("2001:db8:0:1::7", 80), "jump-unix:low7");
  EXPECT_EQ(Route("2001:db9::1", 80, "2001:db8:bad:1::1"), "fail");
  EXPECT_EQ(Route("2001:db9::1", 80, "2001:db8:bae::1"), "jump-unix:other");
}

TEST_F(RouteTableTest, RemoteAddressAndPortRules) {
  Load(
      "max-rules:1\nrule-set:0 size:4\n"
      "rip:2001:db8:aaaa::/48 rport:5000 jump-fd:5\n"
      "rip:2001:db8:aaaa::/48 jump-fd:4\n"
      "rport:53 jump-fd:3\n"
      "default fail\n");
  EXPECT_EQ(Route("2001:db8::1", 80, "2001:db8:aaaa::9", 5000), "jump-fd:5");
  EXPECT_EQ(Route("2001:db8::1", 80, "2001:db8:aaaa::9", 5001), "jump-fd:4");
  EXPECT_EQ(Route("2001:db8::1", 80, "2001:db8:bbbb::9", 53), "jump-fd:3");
  EXPECT_EQ(Route("2001:db8::1", 80, "2001:db8:bbbb::9", 54), "fail");
}

TEST_F(RouteTableTest, MapsMatchMaskedKeys) {
  Load(
      "max-rules:1\nmax-maps:4\n"
      "rule-set:0 size:4\nport:22 jump-map:1\nport:25 jump-map:2\nrport:7 jump-map:3\n"
      "default jump-map:0\n"
      "map-set:0 size:3 match-lip:128\n"
      "ip:2001:db8::1 jump-unix:one\nip:2001:db8::2 jump-unix:two\ndefault jump-unix:nomatch\n"
      "map-set:1 size:2 match-lip:64 match-rip:32\n"
      "ip:2001:db8:0:1:: rip:2001:db8:: jump-fd:11\n"
      "map-set:2 size:2 match-lip:128 match-lport\n"
      "ip:2001:db8::1 port:25 jump-fd:25\nip:2001:db8::1 port:26 jump-fd:26\n"
      "map-set:3 size:1 match-rport\nrport:7 jump-fd:7\n");
  EXPECT_EQ(Route("2001:db8::1", 80), "jump-unix:one");
  EXPECT_EQ(Route("2001:db8::2", 80), "jump-unix:two");
  EXPECT_EQ(Route("2001:db8::3", 80), "jump-unix:nomatch");
  EXPECT_EQ(Route("2001:db8:0:1:abcd::1", 22, "2001:db8:1234::1"), "jump-fd:11");
  EXPECT_EQ(Route("2001:db8:0:2::1", 22, "2001:db8:1234::1"), "fail");  // map default unset
  EXPECT_EQ(Route("2001:db8:0:1::1", 22, "2001:db9::1"), "fail");
  EXPECT_EQ(Route("2001:db8::1", 25), "jump-fd:25");
  EXPECT_EQ(Route("2001:db8::1", 80, "2001:db8::9", 7), "jump-fd:7");
}

TEST_F(RouteTableTest, MapWithoutMaskFirstEntryWins) {
  // The original returned an arbitrary entry here; we take the first and warn.
  Load(
      "max-rules:1\nmax-maps:1\nrule-set:0 size:1\ndefault jump-map:0\n"
      "map-set:0 size:3\nip:2001:db8::1 jump-fd:1\nip:2001:db8::2 jump-fd:2\n"
      "ip:2001:db8::3 jump-fd:3\n");
  EXPECT_EQ(Route("2001:db8::9", 1), "jump-fd:1");
  EXPECT_THAT(warnings_, HasSubstr("t.conf:7: warning: map-set 0: this entry has the same key as "
                                   "line 6 under the set's mask; line 6 wins"));
  EXPECT_THAT(warnings_, HasSubstr("t.conf:8: warning: map-set 0"));
}

TEST_F(RouteTableTest, JumpChainsAndDefaults) {
  Load(
      "max-rules:4\nrule-set:0 size:1\nport:80 jump-rule:1\ndefault jump-rule:2\n"
      "rule-set:1 size:1\nip:2001:db8::1 jump-rule:3\ndefault jump-unix:r1\n"
      "rule-set:2 size:1\ndefault jump-fd:2\n"
      "rule-set:3 size:1\ndefault jump-unix:r3\n");
  EXPECT_EQ(Route("2001:db8::1", 80), "jump-unix:r3");
  EXPECT_EQ(Route("2001:db8::2", 80), "jump-unix:r1");
  EXPECT_EQ(Route("2001:db8::2", 81), "jump-fd:2");
  EXPECT_TRUE(warnings_.empty()) << warnings_;
}

TEST_F(RouteTableTest, CycleHitsStepLimitAndWarns) {
  Load(
      "max-rules:2\nmax-maps:1\nrule-set:0 size:1\nport:80 jump-rule:1\ndefault jump-fd:9\n"
      "rule-set:1 size:1\ndefault jump-map:0\n"
      "map-set:0 size:1\ndefault jump-rule:1\n");
  EXPECT_EQ(Route("2001:db8::1", 80), "none");
  EXPECT_EQ(Route("2001:db8::1", 81), "jump-fd:9");
  EXPECT_THAT(warnings_, HasSubstr("jump cycle among rule-set 1, map-set 0"));
}

TEST_F(RouteTableTest, SelfLoopWarns) {
  Load("max-rules:1\nrule-set:0 size:1\ndefault jump-rule:0\n");
  EXPECT_EQ(Route("::1", 1), "none");
  EXPECT_THAT(warnings_, HasSubstr("jump cycle among rule-set 0"));
}

TEST_F(RouteTableTest, ChainOfExactlyTheStepLimit) {
  // 100 set lookups are allowed: rule-set 0 .. 98 jump onward, 99 decides.
  std::string text = "max-rules:101\n";
  for (int i = 0; i < 101; ++i) {
    text += "rule-set:" + std::to_string(i) + " size:1\ndefault ";
    text += i < 99 ? "jump-rule:" + std::to_string(i + 1) : "jump-fd:" + std::to_string(i);
    text += "\n";
  }
  Load(text);
  EXPECT_EQ(Route("::1", 1), "jump-fd:99");
  // One more hop and the limit is exceeded.
  text.replace(text.find("default jump-fd:99"), 18, "default jump-rule:100");
  Load(text);
  EXPECT_EQ(Route("::1", 1), "none");
}

TEST_F(RouteTableTest, JumpToMissingSetIsNoDecisionAndWarns) {
  Load(
      "max-rules:1\nmax-maps:1\nrule-set:0 size:2\nport:1 jump-map:5\nport:2 jump-rule:3\n"
      "default jump-map:0\n");
  EXPECT_EQ(Route("::1", 1), "none");
  EXPECT_EQ(Route("::1", 2), "none");
  EXPECT_EQ(Route("::1", 3), "fail");  // map-set 0 exists, never configured: default fail
  EXPECT_THAT(warnings_, HasSubstr("t.conf:4: warning: jump-map:5 names a map-set that does not "
                                   "exist (max-maps:1)"));
  EXPECT_THAT(warnings_, HasSubstr("t.conf:5: warning: jump-rule:3 names a rule-set"));
}

TEST_F(RouteTableTest, NoRuleSetsMeansNoDecision) {
  Load("max-maps:1\n");
  EXPECT_EQ(Route("::1", 1), "none");
  EXPECT_THAT(warnings_, HasSubstr("no rule-set 0"));
}

TEST_F(RouteTableTest, Ipv4MappedTuples) {
  Load(
      "max-rules:1\nrule-set:0 size:2\nip:::ffff:192.0.2.0/120 jump-fd:4\n"
      "rip:::ffff:0.0.0.0/96 jump-fd:6\n");
  EXPECT_EQ(Route("192.0.2.77", 80), "jump-fd:4");
  EXPECT_EQ(Route("::ffff:192.0.3.1", 80, "198.51.100.1"), "jump-fd:6");
  EXPECT_EQ(Route("::ffff:192.0.3.1", 80, "2001:db8::1"), "fail");
}

TEST_F(RouteTableTest, FieldsUsedCoversOnlyReachableSets) {
  Load(
      "max-rules:3\nrule-set:0 size:1\nip:2001:db8::/64 jump-rule:1\n"
      "rule-set:1 size:1\nport:80 jump-fd:1\n"
      "rule-set:2 size:1\nrip:::1 rport:9 fail\n");  // unreachable
  const PackedTuple& used = table_->fields_used();
  EXPECT_TRUE(used.HasLocalAddress());
  EXPECT_TRUE(used.HasLocalPort());
  EXPECT_FALSE(used.HasRemoteAddress());
  EXPECT_FALSE(used.HasRemotePort());
}

// Every fd a configuration names, once, at the line that first names it
// (entries, defaults, rule and map sets alike), in line order: the daemon
// checks each before it uses the table.
TEST_F(RouteTableTest, NamedFdsListEachFdOnceAtItsFirstLine) {
  using NamedFd = RouteTable::NamedFd;
  struct Case {
    const char* name;
    const char* text;
    std::vector<NamedFd> want;
  };
  const Case cases[] = {
      {"none", "max-rules:1\nrule-set:0 size:1\nport:80 jump-unix:/x\ndefault fail\n", {}},
      {"entries and default",
       "max-rules:1\nrule-set:0 size:2\nport:81 jump-fd:7\nport:82 jump-fd:5\ndefault jump-fd:20\n",
       {{7, 3}, {5, 4}, {20, 5}}},
      {"repeats keep the first line",
       "max-rules:1\nrule-set:0 size:3\nport:81 jump-fd:9\nport:82 jump-fd:4\nport:83 jump-fd:9\n"
       "default jump-fd:4\n",
       {{9, 3}, {4, 4}}},
      {"map sets and unreachable sets too",
       "max-rules:2\nmax-maps:1\nrule-set:0 size:1\nport:80 jump-map:0\n"
       "map-set:0 size:1 match-lport\nport:80 jump-fd:11\ndefault jump-fd:12\n"
       "rule-set:1 size:1\ndefault jump-fd:13\n",
       {{11, 6}, {12, 7}, {13, 9}}},
  };
  for (const Case& c : cases) {
    Load(c.text);
    EXPECT_EQ(table_->named_fds(), c.want) << c.name;
  }
}

TEST_F(RouteTableTest, LoadErrorListsEveryError) {
  auto loaded = LoadConfigText("max-rules:1\nrule-set:0 size:1\nbogus\nport:x\n", "bad.conf");
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("bad.conf:3: error"));
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("bad.conf:4: error"));
}

// Exact-address listeners are made per (address, port): a rule that names
// a port, or a map keyed on the local port, limits its address to that port.
TEST_F(RouteTableTest, ExactLocalsCarryTheirPort) {
  Load(
      "max-rules:2\nmax-maps:1\nrule-set:0 size:5\n"
      "ip:2001:db8::1 port:80 jump-unix:a\n"
      "ip:2001:db8::2 jump-unix:b\n"
      "ip:2001:db8::/64 port:443 jump-unix:c\n"  // not exact: no listener
      "ip:2001:db8::3 jump-map:0\n"
      "ip:2001:db8::9 jump-rule:1\n"
      "rule-set:1 size:1\nip:2001:db8::1 port:80 jump-unix:dup\n"
      "map-set:0 size:1 match-lip:128 match-lport\n"
      "ip:2001:db8::4 port:8443 jump-unix:m\n");
  using E = RouteTable::ExactLocal;
  const auto ip = [](const char* s) { return *ParseIp6(s); };
  EXPECT_THAT(table_->ExactLocals(),
              ::testing::UnorderedElementsAre(E{ip("2001:db8::1"), 80}, E{ip("2001:db8::2"), {}},
                                              E{ip("2001:db8::3"), {}}, E{ip("2001:db8::9"), {}},
                                              E{ip("2001:db8::4"), 8443}));
}

}  // namespace
}  // namespace sbx
