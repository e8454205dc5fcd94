// Address encodings: which binds and connects are redirected, and where.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "preload/address_plan.h"
#include "preload/env_config.h"

namespace sbx::preload {
namespace {

using Kind = Plan::Kind;
using Source = UnixTarget::Source;

sockaddr_storage V6(const char* text, uint16_t port, uint32_t scope = 0) {
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
  a->sin6_family = AF_INET6;
  a->sin6_port = htons(port);
  a->sin6_scope_id = scope;
  EXPECT_EQ(inet_pton(AF_INET6, text, &a->sin6_addr), 1) << text;
  return ss;
}

sockaddr_storage V4(const char* text, uint16_t port) {
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in*>(&ss);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET, text, &a->sin_addr), 1) << text;
  return ss;
}

class AddressPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = std::make_unique<Config>();
    config_->directory_root.set = true;
    std::strcpy(config_->directory_root.path, "/run/sb");
    config_->directory_root2.set = true;
    std::strcpy(config_->directory_root2.path, "/run/sb2");
  }
  Plan Bind(const sockaddr_storage& ss, socklen_t len) {
    return PlanAddress(reinterpret_cast<const sockaddr*>(&ss), len, Operation::kBind, *config_);
  }
  Plan Bind6(const char* text, uint16_t port) { return Bind(V6(text, port), sizeof(sockaddr_in6)); }
  Plan Bind4(const char* text, uint16_t port) { return Bind(V4(text, port), sizeof(sockaddr_in)); }
  Plan Connect(const sockaddr_storage& ss, socklen_t len) {
    return PlanAddress(reinterpret_cast<const sockaddr*>(&ss), len, Operation::kConnect, *config_);
  }
  std::unique_ptr<Config> config_;
};

TEST_F(AddressPlanTest, RecordFileForms) {
  struct Case {
    const char* address;
    bool stream;
    uint16_t file, record;
  } cases[] = {
      {"fe8f::0:1:2", false, 1, 2},
      {"fe8f::1:1:2", true, 1, 2},
      {"fe8f::0:ffff:ffff", false, 0xffff, 0xffff},
      {"fe8f::", false, 0, 0},
  };
  for (const auto& c : cases) {
    const Plan p = Bind6(c.address, 80);
    ASSERT_EQ(p.kind, Kind::kUnix) << c.address;
    EXPECT_EQ(p.target.source, Source::kRecordFile);
    EXPECT_EQ(p.target.stream, c.stream);
    EXPECT_EQ(p.target.a, c.file);
    EXPECT_EQ(p.target.b, c.record);
    EXPECT_EQ(p.target.port, 80);
  }
}

TEST_F(AddressPlanTest, Directory2Forms) {
  Plan p = Bind6("fe8f::2:7:9", 443);
  ASSERT_EQ(p.kind, Kind::kUnix);
  EXPECT_EQ(p.target.source, Source::kDirectory2);
  EXPECT_FALSE(p.target.stream);
  EXPECT_FALSE(p.target.x_prefix);
  EXPECT_EQ(p.target.a, 7);
  EXPECT_EQ(p.target.b, 9);
  p = Bind6("fe8f::3:7:9", 443);
  ASSERT_EQ(p.kind, Kind::kUnix);
  EXPECT_TRUE(p.target.stream);
}

TEST_F(AddressPlanTest, NotRedirected) {
  for (const char* a : {"fe8f::4:1:2",      // X beyond 3
                        "fe8f:0:0:1::1:2",  // reserved group 3 nonzero
                        "fe8f:2::1:2",      // group 1 neither 0 nor 1
                        "fe8f::1:0:1:2",    // group 4 nonzero
                        "2001:db8::1", "fe80::1", "::1"}) {
    EXPECT_EQ(Bind6(a, 80).kind, Kind::kPassThrough) << a;
  }
  // fe8f::X:... binds that are not redirected still reach the kernel, which
  // refuses them; the plan says why (the caller prints it).
  Plan p = Bind6("fe8f::0:1:2", 0);
  EXPECT_EQ(p.kind, Kind::kUnredirected);
  EXPECT_EQ(p.why, Plan::Why::kPortZero);
  p = Bind6("fe8f::0:1:2", 1024);  // default filter
  EXPECT_EQ(p.kind, Kind::kUnredirected);
  EXPECT_EQ(p.why, Plan::Why::kFiltered);
  EXPECT_STREQ(p.variable, "SKBOX_PORT_FILTER_IPV6");
  // Connects to them are the program's own business.
  EXPECT_EQ(PlanAddress(nullptr, 0, Operation::kConnect, *config_).kind, Kind::kPassThrough);
}

TEST_F(AddressPlanTest, NeedsItsDirectory) {
  config_->directory_root.set = false;
  Plan p = Bind6("fe8f::0:1:2", 80);
  EXPECT_EQ(p.kind, Kind::kUnredirected);
  EXPECT_EQ(p.why, Plan::Why::kUnset);
  EXPECT_STREQ(p.variable, "SKBOX_DIRECTORY_ROOT");
  EXPECT_EQ(Bind6("fe8f::2:1:2", 80).kind, Kind::kUnix);
  config_->directory_root2.set = false;
  p = Bind6("fe8f::2:1:2", 80);
  EXPECT_EQ(p.kind, Kind::kUnredirected);
  EXPECT_STREQ(p.variable, "SKBOX_DIRECTORY_ROOT2");
}

TEST_F(AddressPlanTest, LongerAddressLengthsAreUnderstood) {
  // The original only looked at exactly 28 bytes; sockaddr_storage is 128.
  const auto ss = V6("fe8f::0:1:2", 80);
  EXPECT_EQ(Bind(ss, sizeof(sockaddr_storage)).kind, Kind::kUnix);
  EXPECT_EQ(Bind(ss, sizeof(sockaddr_in6) + 4).kind, Kind::kUnix);
  EXPECT_EQ(Bind(ss, sizeof(sockaddr_in6) - 4).kind, Kind::kPassThrough);  // short
  const auto ss4 = V4("127.180.1.2", 80);
  config_->filter_ipv4.filter = PortFilter::Below(1024);
  EXPECT_EQ(Bind(ss4, sizeof(sockaddr_storage)).kind, Kind::kUnix);
  EXPECT_EQ(Bind(ss4, 8).kind, Kind::kPassThrough);
}

TEST_F(AddressPlanTest, ScopeIdPassesThroughUnlessCleared) {
  const auto ss = V6("fe8f::0:1:2", 80, 3);
  EXPECT_EQ(Bind(ss, sizeof(sockaddr_in6)).kind, Kind::kPassThrough);
  config_->clear_scope_id = true;
  EXPECT_EQ(Bind(ss, sizeof(sockaddr_in6)).kind, Kind::kUnix);
}

TEST_F(AddressPlanTest, LinkLocalForm) {
  const Plan p = Bind6("fe8f:1:0:7:1:2:3:4", 22);
  ASSERT_EQ(p.kind, Kind::kLinkLocal);
  char text[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &p.link_local.sin6_addr, text, sizeof(text));
  EXPECT_STREQ(text, "fe80::1:2:3:4");
  EXPECT_EQ(p.link_local.sin6_scope_id, 7u);
  EXPECT_EQ(ntohs(p.link_local.sin6_port), 22);
  const Plan big = Bind6("fe8f:1:1:2::9", 22);
  EXPECT_EQ(big.link_local.sin6_scope_id, 0x10002u);
  // Port 0 and high ports too: it is a plain address rewrite.
  EXPECT_EQ(Bind6("fe8f:1:0:7::1", 40000).kind, Kind::kLinkLocal);
}

TEST_F(AddressPlanTest, WildcardModes) {
  EXPECT_EQ(Bind6("::", 80).kind, Kind::kPassThrough);  // filter passes nothing by default
  EXPECT_EQ(Bind4("0.0.0.0", 80).kind, Kind::kPassThrough);
  config_->filter_ipv6_wildcard.filter = PortFilter::Below(1024);
  config_->filter_ipv4_wildcard.filter = PortFilter::Below(1024);
  Plan p = Bind6("::", 80);
  ASSERT_EQ(p.kind, Kind::kUnix);
  EXPECT_EQ(p.target.source, Source::kDirectory2);
  EXPECT_TRUE(p.target.x_prefix);
  EXPECT_EQ(p.target.a, 0);
  EXPECT_EQ(p.target.b, 0);
  p = Bind4("0.0.0.0", 80);
  ASSERT_EQ(p.kind, Kind::kUnix);
  EXPECT_EQ(p.target.a, 4);
  p = Bind6("::ffff:0.0.0.0", 80);  // IPv4 as ::ffff:a.b.c.d
  ASSERT_EQ(p.kind, Kind::kUnix);
  EXPECT_EQ(p.target.a, 4);
  EXPECT_EQ(Connect(V6("::", 80), sizeof(sockaddr_in6)).kind, Kind::kPassThrough);
}

TEST_F(AddressPlanTest, Ipv4Loopback180) {
  EXPECT_EQ(Bind4("127.180.1.2", 80).kind, Kind::kPassThrough);  // no IPv4 filter by default
  config_->filter_ipv4.filter = PortFilter::Below(1024);
  Plan p = Bind4("127.180.1.2", 80);
  ASSERT_EQ(p.kind, Kind::kUnix);
  EXPECT_FALSE(p.target.stream);
  EXPECT_EQ(p.target.a, 4001);
  EXPECT_EQ(p.target.b, 2);
  EXPECT_TRUE(p.target.x_prefix);
  p = Bind4("127.181.255.255", 80);
  ASSERT_EQ(p.kind, Kind::kUnix);
  EXPECT_TRUE(p.target.stream);
  EXPECT_EQ(p.target.a, 4255);
  EXPECT_EQ(p.target.b, 255);
  EXPECT_EQ(Bind6("::ffff:127.180.1.2", 80).kind, Kind::kUnix);
  EXPECT_EQ(Bind4("127.182.1.2", 80).kind, Kind::kPassThrough);
  EXPECT_EQ(Bind4("127.0.0.1", 80).kind, Kind::kPassThrough);
}

TEST_F(AddressPlanTest, ConnectIgnoresPortFiltersButNeedsBForIpv4) {
  EXPECT_EQ(Connect(V6("fe8f::1:1:2", 8080), sizeof(sockaddr_in6)).kind, Kind::kUnix);
  EXPECT_EQ(Connect(V6("fe8f::1:1:2", 0), sizeof(sockaddr_in6)).kind, Kind::kPassThrough);
  EXPECT_EQ(Connect(V4("127.181.0.1", 8080), sizeof(sockaddr_in)).kind, Kind::kPassThrough);
  config_->connect_ipv4 = true;
  EXPECT_EQ(Connect(V4("127.181.0.1", 8080), sizeof(sockaddr_in)).kind, Kind::kUnix);
}

TEST_F(AddressPlanTest, BrokenSettingsFailTheirClassOnly) {
  config_->filter_ipv6.broken = true;
  Plan p = Bind6("fe8f::0:1:2", 80);
  EXPECT_EQ(p.kind, Kind::kFail);
  EXPECT_EQ(p.error, EINVAL);
  EXPECT_EQ(Bind6("2001:db8::1", 80).kind, Kind::kPassThrough);
  config_->directory_root2.broken = true;
  p = Bind6("fe8f::2:1:2", 80);
  EXPECT_EQ(p.kind, Kind::kFail);
  EXPECT_EQ(p.error, ENAMETOOLONG);
}

TEST_F(AddressPlanTest, OtherFamiliesAndNull) {
  sockaddr_storage ss{};
  ss.ss_family = AF_UNIX;
  EXPECT_EQ(Bind(ss, sizeof(ss)).kind, Kind::kPassThrough);
  EXPECT_EQ(PlanAddress(nullptr, 28, Operation::kBind, *config_).kind, Kind::kPassThrough);
  EXPECT_EQ(Bind(V6("fe8f::0:1:2", 80), 0).kind, Kind::kPassThrough);
}

}  // namespace
}  // namespace sbx::preload
