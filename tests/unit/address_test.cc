#include "engine/core/address.h"

#include <arpa/inet.h>

#include "gtest/gtest.h"

namespace sbx {
namespace {

TEST(Ip6Test, ParsesAndPrintsIpv6) {
  auto ip = ParseIp6("2001:db8::1");
  ASSERT_TRUE(ip.has_value());
  EXPECT_EQ(ip->group(0), 0x2001);
  EXPECT_EQ(ip->group(7), 1);
  EXPECT_EQ(FormatIp6(*ip), "2001:db8::1");
}

TEST(Ip6Test, Ipv4MappedForms) {
  auto mapped = ParseIp6("::ffff:192.0.2.1");
  ASSERT_TRUE(mapped.has_value());
  EXPECT_TRUE(mapped->IsV4Mapped());
  EXPECT_EQ(FormatIp6(*mapped), "::ffff:192.0.2.1");
  EXPECT_FALSE(ParseIp6("192.0.2.1").has_value());
  auto plain = ParseIp6("192.0.2.1", /*allow_ipv4=*/true);
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(*plain, *mapped);
}

TEST(Ip6Test, RejectsGarbage) {
  for (const char* bad :
       {"", ":::", "2001:db8::1/64", "x", "1.2.3", "2001:db8::1 ", "::ffff:300.0.0.1"}) {
    EXPECT_FALSE(ParseIp6(bad, true).has_value()) << bad;
  }
  EXPECT_FALSE(ParseIp6(std::string_view("::1\0", 4)).has_value());
  EXPECT_FALSE(ParseIp6(std::string(200, '1')).has_value());
}

TEST(PrefixMaskTest, Lengths) {
  EXPECT_EQ(FormatIp6(PrefixMask(0)), "::");
  EXPECT_EQ(FormatIp6(PrefixMask(64)), "ffff:ffff:ffff:ffff::");
  EXPECT_EQ(FormatIp6(PrefixMask(65)), "ffff:ffff:ffff:ffff:8000::");
  EXPECT_EQ(FormatIp6(PrefixMask(127)), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
  EXPECT_EQ(FormatIp6(PrefixMask(128)), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}

TEST(HostPortTest, ParsesForms) {
  auto a = ParseHostPort("[2001:db8::1]:80");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->family, AF_INET6);
  EXPECT_EQ(a->port, 80);
  EXPECT_EQ(FormatHostPort(*a), "[2001:db8::1]:80");

  auto v4 = ParseHostPort("192.0.2.1:8080");
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(v4->family, AF_INET);
  EXPECT_EQ(FormatHostPort(*v4), "192.0.2.1:8080");

  auto scoped = ParseHostPort("[fe80::1%1]:22");
  ASSERT_TRUE(scoped.has_value());
  EXPECT_EQ(scoped->scope_id, 1u);
  auto named = ParseHostPort("[fe80::1%lo]:22");
  ASSERT_TRUE(named.has_value());
  EXPECT_NE(named->scope_id, 0u);

  for (const char* bad : {"[::1]", "[::1]:", "[::1]:65536", "::1:80", "[::1%nosuchif0]:1",
                          "1.2.3.4", "[1.2.3.4]:80", "[::1]:8x"}) {
    EXPECT_FALSE(ParseHostPort(bad).has_value()) << bad;
  }
}

TEST(HostPortTest, SockaddrRoundTrip) {
  for (const char* text : {"[2001:db8::5]:443", "10.1.2.3:25"}) {
    auto a = ParseHostPort(text);
    ASSERT_TRUE(a.has_value());
    sockaddr_storage ss;
    const socklen_t len = a->ToSockaddr(&ss);
    auto back = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, *a) << text;
  }
  sockaddr_in6 short_addr{};
  short_addr.sin6_family = AF_INET6;
  EXPECT_FALSE(
      SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&short_addr), 8).has_value());
}

}  // namespace
}  // namespace sbx
