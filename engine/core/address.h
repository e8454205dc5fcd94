// IPv6 addresses (IPv4 held as IPv4-mapped ::ffff:a.b.c.d), socket addresses
// with port and scope id, prefix masks; parsing and printing.
//
// Everything is in network byte order inside Ip6. Free of abseil and
// exceptions: the preload library and the inetd tools use it too.
#ifndef SBX_ENGINE_CORE_ADDRESS_H_
#define SBX_ENGINE_CORE_ADDRESS_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sbx {

struct Ip6 {
  std::array<uint8_t, 16> bytes{};

  static Ip6 FromIn6(const in6_addr& a);
  // ::ffff:a.b.c.d from an IPv4 address in network byte order.
  static Ip6 MappedFromIn4(const in_addr& a);
  in6_addr ToIn6() const;

  bool IsUnspecified() const;
  bool IsV4Mapped() const;
  // 16-bit group `i` (0..7) in host order: group(0) of 2001:db8:: is 0x2001.
  uint16_t group(int i) const {
    return static_cast<uint16_t>(bytes[2 * i] << 8 | bytes[2 * i + 1]);
  }
  Ip6 operator&(const Ip6& mask) const;

  friend bool operator==(const Ip6&, const Ip6&) = default;
};

// A mask with the first `prefix_len` (0..128) bits set.
Ip6 PrefixMask(int prefix_len);

// IPv6 text ("2001:db8::1", "::ffff:192.0.2.1"). With allow_ipv4, plain
// dotted IPv4 ("192.0.2.1") is accepted too and mapped to ::ffff:192.0.2.1.
std::optional<Ip6> ParseIp6(std::string_view text, bool allow_ipv4 = false);
// RFC 5952 text; IPv4-mapped addresses print as ::ffff:a.b.c.d.
std::string FormatIp6(const Ip6& ip);

// An IPv6 or IPv4 endpoint. IPv4 endpoints keep family AF_INET so that a
// listener can be bound as such; ip() is always the (mapped) IPv6 form.
struct SocketAddress {
  int family = AF_INET6;
  Ip6 ip;
  uint16_t port = 0;
  uint32_t scope_id = 0;

  // Fills `storage`; returns the length to pass to bind/connect.
  socklen_t ToSockaddr(sockaddr_storage* storage) const;
  // From whatever accept/getsockname/getpeername returned. AF_INET becomes a
  // mapped address. nullopt for other families or short lengths.
  static std::optional<SocketAddress> FromSockaddr(const sockaddr* sa, socklen_t len);

  friend bool operator==(const SocketAddress&, const SocketAddress&) = default;
};

// "[2001:db8::1]:80", "[fe80::1%eth0]:80", "[::]:80", "192.0.2.1:80".
std::optional<SocketAddress> ParseHostPort(std::string_view text);
// The inverse of ParseHostPort ("[::ffff:192.0.2.1]:80" for mapped v6,
// "192.0.2.1:80" for AF_INET).
std::string FormatHostPort(const SocketAddress& address);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_ADDRESS_H_
