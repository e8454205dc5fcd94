// PROXY protocol headers (HAProxy's proxy-protocol.txt, versions 1 and 2),
// sent to the target before any client byte so that it learns the client's
// address and the address the client connected to.
//
// Pure functions: no I/O. `source` is the client (the relayed socket's peer),
// `destination` the address it connected to (the relayed socket's local
// address). When both are IPv4-mapped they are sent as IPv4 (TCP4 / AF_INET),
// which is what servers log; otherwise as IPv6. Without addresses (a passed
// AF_UNIX connection) v1 sends "PROXY UNKNOWN" and v2 a LOCAL command, which
// tells the target to use the connection's own addresses.
#ifndef SBX_RELAY_PROXY_HEADER_H_
#define SBX_RELAY_PROXY_HEADER_H_

#include <string>

#include "engine/core/address.h"

namespace sbx::relay {

enum class ProxyVersion { kNone, kV1, kV2 };

// "PROXY TCP4 192.0.2.2 198.51.100.7 40000 80\r\n" (at most 107 bytes).
std::string EncodeProxyV1(const SocketAddress* source, const SocketAddress* destination);

// The 16-byte v2 signature and header, then 12 (IPv4) or 36 (IPv6) address
// bytes, or none for LOCAL.
std::string EncodeProxyV2(const SocketAddress* source, const SocketAddress* destination);

// Either of the above; empty for kNone.
std::string EncodeProxyHeader(ProxyVersion version, const SocketAddress* source,
                              const SocketAddress* destination);

}  // namespace sbx::relay

#endif  // SBX_RELAY_PROXY_HEADER_H_
