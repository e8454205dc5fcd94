// PROXY protocol v1/v2 encoding, checked against the bytes of HAProxy's
// proxy-protocol.txt examples.
#include "relay/proxy_header.h"

#include <gtest/gtest.h>

#include <string>

namespace sbx::relay {
namespace {

SocketAddress Addr(const char* ip, uint16_t port) {
  SocketAddress a;
  a.ip = *ParseIp6(ip, /*allow_ipv4=*/true);
  a.port = port;
  return a;
}

TEST(ProxyV1, MappedAddressesGoAsTcp4) {
  const SocketAddress src = Addr("192.0.2.2", 40000), dst = Addr("198.51.100.7", 80);
  EXPECT_EQ(EncodeProxyV1(&src, &dst), "PROXY TCP4 192.0.2.2 198.51.100.7 40000 80\r\n");
}

TEST(ProxyV1, Ipv6AsTcp6) {
  const SocketAddress src = Addr("2001:db8:ffff::2", 1), dst = Addr("2001:db8:1::10", 65535);
  EXPECT_EQ(EncodeProxyV1(&src, &dst), "PROXY TCP6 2001:db8:ffff::2 2001:db8:1::10 1 65535\r\n");
}

TEST(ProxyV1, MixedFamiliesStayTcp6) {
  const SocketAddress src = Addr("192.0.2.2", 5), dst = Addr("2001:db8::1", 6);
  EXPECT_EQ(EncodeProxyV1(&src, &dst), "PROXY TCP6 ::ffff:192.0.2.2 2001:db8::1 5 6\r\n");
}

TEST(ProxyV1, UnknownWithoutAddresses) {
  EXPECT_EQ(EncodeProxyV1(nullptr, nullptr), "PROXY UNKNOWN\r\n");
}

TEST(ProxyV1, LongestFitsTheSpecLimit) {
  const SocketAddress src = Addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
  const SocketAddress dst = Addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
  EXPECT_LE(EncodeProxyV1(&src, &dst).size(), 107u);
}

const std::string kSignature("\r\n\r\n\0\r\nQUIT\n", 12);

TEST(ProxyV2, Ipv4Bytes) {
  const SocketAddress src = Addr("192.0.2.2", 0x1234), dst = Addr("198.51.100.7", 80);
  const std::string h = EncodeProxyV2(&src, &dst);
  ASSERT_EQ(h.size(), 16u + 12u);
  EXPECT_EQ(h.substr(0, 12), kSignature);
  EXPECT_EQ(static_cast<uint8_t>(h[12]), 0x21);  // version 2, PROXY
  EXPECT_EQ(static_cast<uint8_t>(h[13]), 0x11);  // AF_INET, STREAM
  EXPECT_EQ(h.substr(14, 2), std::string("\x00\x0c", 2));
  EXPECT_EQ(h.substr(16, 4), std::string("\xc0\x00\x02\x02", 4));
  EXPECT_EQ(h.substr(20, 4), std::string("\xc6\x33\x64\x07", 4));
  EXPECT_EQ(h.substr(24, 2), std::string("\x12\x34", 2));
  EXPECT_EQ(h.substr(26, 2), std::string("\x00\x50", 2));
}

TEST(ProxyV2, Ipv6Bytes) {
  const SocketAddress src = Addr("2001:db8::2", 443), dst = Addr("2001:db8::1", 8443);
  const std::string h = EncodeProxyV2(&src, &dst);
  ASSERT_EQ(h.size(), 16u + 36u);
  EXPECT_EQ(static_cast<uint8_t>(h[13]), 0x21);  // AF_INET6, STREAM
  EXPECT_EQ(h.substr(14, 2), std::string("\x00\x24", 2));
  EXPECT_EQ(h.substr(16, 16), std::string(reinterpret_cast<const char*>(src.ip.bytes.data()), 16));
  EXPECT_EQ(h.substr(32, 16), std::string(reinterpret_cast<const char*>(dst.ip.bytes.data()), 16));
  EXPECT_EQ(h.substr(48, 2), std::string("\x01\xbb", 2));
  EXPECT_EQ(h.substr(50, 2), std::string("\x20\xfb", 2));
}

TEST(ProxyV2, LocalWithoutAddresses) {
  const std::string h = EncodeProxyV2(nullptr, nullptr);
  EXPECT_EQ(h, kSignature + std::string("\x20\x00\x00\x00", 4));
}

TEST(ProxyHeader, NoneIsEmpty) {
  const SocketAddress a = Addr("::1", 1);
  EXPECT_EQ(EncodeProxyHeader(ProxyVersion::kNone, &a, &a), "");
  EXPECT_EQ(EncodeProxyHeader(ProxyVersion::kV1, &a, &a), EncodeProxyV1(&a, &a));
  EXPECT_EQ(EncodeProxyHeader(ProxyVersion::kV2, &a, &a), EncodeProxyV2(&a, &a));
}

}  // namespace
}  // namespace sbx::relay
