#include "relay/proxy_header.h"

#include <arpa/inet.h>

#include <cstdint>

#include "engine/core/str_cat.h"

namespace sbx::relay {
namespace {

constexpr char kV2Signature[] = "\r\n\r\n\0\r\nQUIT\n";  // 12 bytes, with the NUL
constexpr uint8_t kV2VersionLocal = 0x20;
constexpr uint8_t kV2VersionProxy = 0x21;
constexpr uint8_t kV2TcpOver4 = 0x11;
constexpr uint8_t kV2TcpOver6 = 0x21;

bool BothMapped(const SocketAddress& a, const SocketAddress& b) {
  return a.ip.IsV4Mapped() && b.ip.IsV4Mapped();
}

std::string Ip4Text(const Ip6& ip) {
  char text[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &ip.bytes[12], text, sizeof(text));
  return text;
}

// v1 wants plain IPv6 text without scope or brackets.
std::string Ip6Text(const Ip6& ip) {
  char text[INET6_ADDRSTRLEN];
  ::inet_ntop(AF_INET6, ip.bytes.data(), text, sizeof(text));
  return text;
}

void AppendBigEndian16(std::string* out, uint16_t value) {
  out->push_back(static_cast<char>(value >> 8));
  out->push_back(static_cast<char>(value & 0xff));
}

}  // namespace

std::string EncodeProxyV1(const SocketAddress* source, const SocketAddress* destination) {
  if (source == nullptr || destination == nullptr) return "PROXY UNKNOWN\r\n";
  if (BothMapped(*source, *destination)) {
    return StrCat("PROXY TCP4 ", Ip4Text(source->ip), " ", Ip4Text(destination->ip), " ",
                  source->port, " ", destination->port, "\r\n");
  }
  return StrCat("PROXY TCP6 ", Ip6Text(source->ip), " ", Ip6Text(destination->ip), " ",
                source->port, " ", destination->port, "\r\n");
}

std::string EncodeProxyV2(const SocketAddress* source, const SocketAddress* destination) {
  std::string out(kV2Signature, 12);
  if (source == nullptr || destination == nullptr) {
    out.push_back(static_cast<char>(kV2VersionLocal));
    out.push_back(0);  // AF_UNSPEC, UNSPEC
    AppendBigEndian16(&out, 0);
    return out;
  }
  out.push_back(static_cast<char>(kV2VersionProxy));
  if (BothMapped(*source, *destination)) {
    out.push_back(static_cast<char>(kV2TcpOver4));
    AppendBigEndian16(&out, 12);
    out.append(reinterpret_cast<const char*>(&source->ip.bytes[12]), 4);
    out.append(reinterpret_cast<const char*>(&destination->ip.bytes[12]), 4);
  } else {
    out.push_back(static_cast<char>(kV2TcpOver6));
    AppendBigEndian16(&out, 36);
    out.append(reinterpret_cast<const char*>(source->ip.bytes.data()), 16);
    out.append(reinterpret_cast<const char*>(destination->ip.bytes.data()), 16);
  }
  AppendBigEndian16(&out, source->port);
  AppendBigEndian16(&out, destination->port);
  return out;
}

std::string EncodeProxyHeader(ProxyVersion version, const SocketAddress* source,
                              const SocketAddress* destination) {
  switch (version) {
    case ProxyVersion::kV1:
      return EncodeProxyV1(source, destination);
    case ProxyVersion::kV2:
      return EncodeProxyV2(source, destination);
    case ProxyVersion::kNone:
      break;
  }
  return {};
}

}  // namespace sbx::relay
