#include "engine/core/address.h"

#include <arpa/inet.h>
#include <net/if.h>

#include <cstring>

#include "engine/core/numbers.h"

namespace sbx {
namespace {

constexpr uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// inet_pton needs a NUL-terminated string; addresses are short, so copy into
// a bounded buffer (and refuse embedded NULs, which inet_pton would cut at).
bool CopyToCString(std::string_view text, char (&buf)[INET6_ADDRSTRLEN + 1]) {
  if (text.size() >= sizeof(buf) || text.find('\0') != std::string_view::npos) return false;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  return true;
}

std::optional<uint32_t> ParseScope(std::string_view scope) {
  if (auto number = ParseDecimal(scope, 1, UINT32_MAX)) return static_cast<uint32_t>(*number);
  char name[IF_NAMESIZE + 1];
  if (scope.empty() || scope.size() >= sizeof(name)) return std::nullopt;
  std::memcpy(name, scope.data(), scope.size());
  name[scope.size()] = '\0';
  const unsigned index = if_nametoindex(name);
  if (index == 0) return std::nullopt;
  return index;
}

}  // namespace

Ip6 Ip6::FromIn6(const in6_addr& a) {
  Ip6 ip;
  std::memcpy(ip.bytes.data(), &a, 16);
  return ip;
}

Ip6 Ip6::MappedFromIn4(const in_addr& a) {
  Ip6 ip;
  std::memcpy(ip.bytes.data(), kV4MappedPrefix, 12);
  std::memcpy(ip.bytes.data() + 12, &a, 4);
  return ip;
}

in6_addr Ip6::ToIn6() const {
  in6_addr a;
  std::memcpy(&a, bytes.data(), 16);
  return a;
}

bool Ip6::IsUnspecified() const { return *this == Ip6{}; }

bool Ip6::IsV4Mapped() const { return std::memcmp(bytes.data(), kV4MappedPrefix, 12) == 0; }

Ip6 Ip6::operator&(const Ip6& mask) const {
  Ip6 out;
  for (size_t i = 0; i < 16; ++i) out.bytes[i] = bytes[i] & mask.bytes[i];
  return out;
}

Ip6 PrefixMask(int prefix_len) {
  Ip6 mask;
  if (prefix_len < 0) prefix_len = 0;
  if (prefix_len > 128) prefix_len = 128;
  for (int i = 0; i < 16; ++i) {
    const int bits = prefix_len - 8 * i;
    if (bits >= 8) {
      mask.bytes[i] = 0xff;
    } else if (bits > 0) {
      mask.bytes[i] = static_cast<uint8_t>(0xff00 >> bits);
    }
  }
  return mask;
}

std::optional<Ip6> ParseIp6(std::string_view text, bool allow_ipv4) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (!CopyToCString(text, buf)) return std::nullopt;
  in6_addr a6;
  if (inet_pton(AF_INET6, buf, &a6) == 1) return Ip6::FromIn6(a6);
  in_addr a4;
  if (allow_ipv4 && inet_pton(AF_INET, buf, &a4) == 1) return Ip6::MappedFromIn4(a4);
  return std::nullopt;
}

std::string FormatIp6(const Ip6& ip) {
  char buf[INET6_ADDRSTRLEN];
  const in6_addr a = ip.ToIn6();
  inet_ntop(AF_INET6, &a, buf, sizeof(buf));
  return buf;
}

socklen_t SocketAddress::ToSockaddr(sockaddr_storage* storage) const {
  std::memset(storage, 0, sizeof(*storage));
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, ip.bytes.data() + 12, 4);
    return sizeof(sockaddr_in);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(storage);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  sin6->sin6_addr = ip.ToIn6();
  sin6->sin6_scope_id = scope_id;
  return sizeof(sockaddr_in6);
}

std::optional<SocketAddress> SocketAddress::FromSockaddr(const sockaddr* sa, socklen_t len) {
  if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) return std::nullopt;
  SocketAddress out;
  if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    sockaddr_in6 sin6;
    std::memcpy(&sin6, sa, sizeof(sin6));
    out.family = AF_INET6;
    out.ip = Ip6::FromIn6(sin6.sin6_addr);
    out.port = ntohs(sin6.sin6_port);
    out.scope_id = sin6.sin6_scope_id;
    return out;
  }
  if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    sockaddr_in sin;
    std::memcpy(&sin, sa, sizeof(sin));
    out.family = AF_INET;
    out.ip = Ip6::MappedFromIn4(sin.sin_addr);
    out.port = ntohs(sin.sin_port);
    return out;
  }
  return std::nullopt;
}

std::optional<SocketAddress> ParseHostPort(std::string_view text) {
  SocketAddress out;
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    if (const size_t percent = host.find('%'); percent != std::string_view::npos) {
      auto scope = ParseScope(host.substr(percent + 1));
      if (!scope) return std::nullopt;
      out.scope_id = *scope;
      host = host.substr(0, percent);
    }
    auto ip = ParseIp6(host);
    if (!ip) return std::nullopt;
    out.family = AF_INET6;
    out.ip = *ip;
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    char buf[INET6_ADDRSTRLEN + 1];
    in_addr a4;
    if (!CopyToCString(host, buf) || inet_pton(AF_INET, buf, &a4) != 1) return std::nullopt;
    out.family = AF_INET;
    out.ip = Ip6::MappedFromIn4(a4);
  }
  auto parsed_port = ParsePort(port);
  if (!parsed_port) return std::nullopt;
  out.port = *parsed_port;
  return out;
}

std::string FormatHostPort(const SocketAddress& address) {
  const std::string ip = FormatIp6(address.ip);
  std::string out;
  if (address.family == AF_INET && address.ip.IsV4Mapped()) {
    out.append(ip, 7);  // without "::ffff:"
  } else {
    out.append("[").append(ip);
    if (address.scope_id != 0) out.append("%").append(std::to_string(address.scope_id));
    out.append("]");
  }
  out.append(":").append(std::to_string(address.port));
  return out;
}

}  // namespace sbx
