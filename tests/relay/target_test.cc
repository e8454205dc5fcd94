// Target resolution: fixed TCP and Unix targets, and NAT64 mode (-N, -P, -x)
// as the original derives the target from the connection's local address.
#include "relay/target.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>

namespace sbx::relay {
namespace {

SocketAddress Addr(const char* ip, uint16_t port) {
  SocketAddress a;
  a.ip = *ParseIp6(ip, true);
  a.port = port;
  return a;
}

TargetSpec Tcp(const char* ip, uint16_t port) {
  TargetSpec t;
  t.tcp = Addr(ip, port);
  t.nat64_prefix = *ParseIp6("64:ff9b::");
  return t;
}

std::string Ip(const ResolvedTarget& r) {
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&r.addr);
  char text[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
  return text;
}

uint16_t Port(const ResolvedTarget& r) {
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&r.addr)->sin6_port);
}

TEST(Target, FixedTcp) {
  const TargetSpec t = Tcp("::ffff:127.0.0.1", 8080);
  auto r = ResolveTarget(t, nullptr);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->family, AF_INET6);
  EXPECT_EQ(Ip(*r), "::ffff:127.0.0.1");
  EXPECT_EQ(Port(*r), 8080);
  EXPECT_EQ(r->len, sizeof(sockaddr_in6));
}

TEST(Target, ScopeIdKept) {
  TargetSpec t = Tcp("fe80::1", 80);
  t.tcp.scope_id = 7;
  auto r = ResolveTarget(t, nullptr);
  ASSERT_TRUE(r);
  EXPECT_EQ(reinterpret_cast<const sockaddr_in6*>(&r->addr)->sin6_scope_id, 7u);
}

TEST(Target, UnixPathAndAbstract) {
  TargetSpec t;
  t.is_unix = true;
  t.unix_path = "/run/app.sock";
  auto r = ResolveTarget(t, nullptr);
  ASSERT_TRUE(r);
  const auto* sun = reinterpret_cast<const sockaddr_un*>(&r->addr);
  EXPECT_STREQ(sun->sun_path, "/run/app.sock");
  EXPECT_EQ(r->len, offsetof(sockaddr_un, sun_path) + 14);
  t.unix_path = "@app";
  r = ResolveTarget(t, nullptr);
  ASSERT_TRUE(r);
  sun = reinterpret_cast<const sockaddr_un*>(&r->addr);
  EXPECT_EQ(std::string(sun->sun_path, 4), std::string("\0app", 4));
  EXPECT_EQ(r->len, offsetof(sockaddr_un, sun_path) + 4);
}

TEST(Nat64, LocalOutsidePrefixIsRefused) {
  TargetSpec t = Tcp("2001:db8:aa::", 80);
  t.nat64 = true;
  const SocketAddress outside = Addr("2001:db8:1::10", 80);
  EXPECT_FALSE(ResolveTarget(t, &outside));
  EXPECT_FALSE(ResolveTarget(t, nullptr));
}

TEST(Nat64, Keeps96BitsAndTakesLast32) {
  TargetSpec t = Tcp("2001:db8:aa::", 0);
  t.nat64 = true;
  const SocketAddress local = Addr("64:ff9b::c000:0221", 443);
  auto r = ResolveTarget(t, &local);
  ASSERT_TRUE(r);
  EXPECT_EQ(Ip(*r), "2001:db8:aa::c000:221");
  EXPECT_EQ(Port(*r), 443);  // -p 0: the local port
  t.tcp.port = 8443;
  r = ResolveTarget(t, &local);
  EXPECT_EQ(Port(*r), 8443);
}

TEST(Nat64, Prefix64ComparesAndCopiesTwoWords) {
  TargetSpec t = Tcp("2001:db8:aa:bb::", 80);
  t.nat64 = true;
  t.nat64_prefix = *ParseIp6("2001:db8:1::");
  t.nat64_prefix64 = true;
  const SocketAddress local = Addr("2001:db8:1:0:1111:2222:3333:4444", 80);
  auto r = ResolveTarget(t, &local);
  ASSERT_TRUE(r);
  EXPECT_EQ(Ip(*r), "2001:db8:aa:bb:1111:2222:3333:4444");
  t.nat64_prefix64 = false;  // 96 bits now differ
  EXPECT_FALSE(ResolveTarget(t, &local));
}

TEST(Nat64, UnixPathGetsHexSuffix) {
  TargetSpec t;
  t.is_unix = true;
  t.unix_path = "/run/t";
  t.nat64 = true;
  t.nat64_prefix = *ParseIp6("64:ff9b::");
  const SocketAddress local = Addr("64:ff9b::c0a8:0a01", 80);
  auto r = ResolveTarget(t, &local);
  ASSERT_TRUE(r);
  EXPECT_STREQ(reinterpret_cast<const sockaddr_un*>(&r->addr)->sun_path, "/run/t-c0a80a01");
}

}  // namespace
}  // namespace sbx::relay
