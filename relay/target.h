// Where a relayed connection goes: a TCP address (-c/-p, scope from -I/-n)
// or a Unix stream path (-u; a leading '@' names the abstract namespace),
// optionally derived per connection from the address the client connected
// to (-N, NAT64 mode; reference §7.1):
//   - the local address must lie in the prefix (-P, default 64:ff9b::/96;
//     with -x only its first 64 bits are compared), else the connection is
//     refused;
//   - TCP: the target keeps -c's first 96 bits (with -x: its first 64, and
//     the third 32-bit word comes from the local address) and takes the local
//     address's last 32 bits; -p 0 means the local port;
//   - Unix: the path becomes PATH-xxxxxxxx, the local address's last 32 bits
//     in lower-case hex.
// Pure functions: no I/O.
#ifndef SBX_RELAY_TARGET_H_
#define SBX_RELAY_TARGET_H_

#include <sys/socket.h>
#include <sys/un.h>

#include <optional>
#include <string>

#include "engine/core/address.h"

namespace sbx::relay {

struct TargetSpec {
  bool is_unix = false;
  SocketAddress tcp;      // when !is_unix; ip defaults to ::1, port to 80
  std::string unix_path;  // when is_unix, as given (with a leading '@')
  bool nat64 = false;
  Ip6 nat64_prefix;  // compared on 96 bits, or 64 with nat64_prefix64
  bool nat64_prefix64 = false;
};

// One connection's target, ready for socket() + connect().
struct ResolvedTarget {
  int family = AF_INET6;
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;  // for logs: "[::1]:80" or "/run/app.sock"
};

// The target for a connection whose local address is `local` (nullptr when
// unknown, e.g. a passed AF_UNIX connection: NAT64 mode then refuses it).
// nullopt when NAT64 mode refuses the connection, or the Unix path (after
// the suffix) does not fit sun_path.
std::optional<ResolvedTarget> ResolveTarget(const TargetSpec& spec, const SocketAddress* local);

}  // namespace sbx::relay

#endif  // SBX_RELAY_TARGET_H_
