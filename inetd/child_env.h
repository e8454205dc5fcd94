// The child's environment: what inetd-style programs expect to find.
//
// UCSPI (tcpserver, s6-tcpserver): PROTO=TCP, TCPLOCALIP, TCPLOCALPORT,
// TCPREMOTEIP, TCPREMOTEPORT. systemd Accept=yes: REMOTE_ADDR, REMOTE_PORT.
// IPv4 connections (also IPv4-mapped ones on an IPv6 socket) print as a dotted
// quad, IPv6 as RFC 5952 text. A passed AF_UNIX socket gets PROTO=UNIX only.
// Inherited values of these names are always removed first, so a child never
// sees stale addresses from the daemon's own environment.
#ifndef SBX_INETD_CHILD_ENV_H_
#define SBX_INETD_CHILD_ENV_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/address.h"
#include "engine/sys/sys_result.h"

namespace sbx::inetd {

struct ConnectionInfo {
  bool is_ip = false;  // false: some other family (AF_UNIX)
  SocketAddress local;
  SocketAddress remote;
};

// getsockname + getpeername of a connected socket. ENOTCONN when the client
// has already gone (nothing to serve).
SysResult<ConnectionInfo> QueryConnection(int fd);

// "192.0.2.1" for IPv4 and IPv4-mapped addresses, else "2001:db8::1".
std::string FormatIpForEnv(const Ip6& ip);

// The key the per-source limit counts by: "" for non-IP peers (not
// limited), the dotted quad for IPv4, the address masked to `prefix6` bits
// for IPv6 ("2001:db8:1::/64"; no suffix at 128).
std::string SourceKey(const ConnectionInfo& info, int prefix6);

// NAME=VALUE strings for `info`.
std::vector<std::string> ConnectionVariables(const ConnectionInfo& info);

// `environ` without the variables ConnectionVariables may set (unless
// `drop_connection_names` is false: -E) and without SKBOX_ACKNOWLEDGE and
// SKBOX_TAKE_LISTENER, which are socketbox-inetd's own settings: a child that
// receives sockets itself (under the preload) must not start acknowledging,
// or asking the engine for a listener, because of them.
std::vector<std::string> BaseEnvironment(const char* const* environ,
                                         bool drop_connection_names = true);

// Owns the strings and the NULL-terminated pointer array execve wants.
class ChildEnvironment {
 public:
  ChildEnvironment(const std::vector<std::string>& base, std::vector<std::string> extra);
  char* const* envp() { return pointers_.data(); }
  const std::vector<std::string>& strings() const { return strings_; }

 private:
  std::vector<std::string> strings_;
  std::vector<char*> pointers_;
};

}  // namespace sbx::inetd

#endif  // SBX_INETD_CHILD_ENV_H_
