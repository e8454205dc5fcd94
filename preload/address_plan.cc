#include "preload/address_plan.h"

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>

#include "engine/core/address.h"

namespace sbx::preload {
namespace {

constexpr uint16_t kFe8f = 0xfe8f;

// The caller's address as IPv6 (IPv4 as ::ffff:a.b.c.d), or false when it is
// neither a complete sockaddr_in nor a complete sockaddr_in6.
bool Normalize(const sockaddr* addr, socklen_t len, Ip6* ip, uint16_t* port, uint32_t* scope_id) {
  if (addr == nullptr) return false;
  sa_family_t family;
  if (len < sizeof(family)) return false;
  std::memcpy(&family, addr, sizeof(family));
  // Copies: the caller's buffer need not be aligned for these structs.
  if (family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    sockaddr_in6 a6;
    std::memcpy(&a6, addr, sizeof(a6));
    *ip = Ip6::FromIn6(a6.sin6_addr);
    *port = ntohs(a6.sin6_port);
    *scope_id = a6.sin6_scope_id;
    return true;
  }
  if (family == AF_INET && len >= sizeof(sockaddr_in)) {
    sockaddr_in a4;
    std::memcpy(&a4, addr, sizeof(a4));
    *ip = Ip6::MappedFromIn4(a4.sin_addr);
    *port = ntohs(a4.sin_port);
    *scope_id = 0;
    return true;
  }
  return false;
}

Plan Fail(int error) {
  Plan plan;
  plan.kind = Plan::Kind::kFail;
  plan.error = error;
  return plan;
}

Plan Unix(const UnixTarget& target) {
  Plan plan;
  plan.kind = Plan::Kind::kUnix;
  plan.target = target;
  return plan;
}

// An address class served by `directory` and gated (for binds) by `filter`.
// nullopt-like kPassThrough when the class is not configured.
Plan Gate(const DirectorySetting& directory, const FilterSetting* filter, uint16_t port,
          const UnixTarget& target) {
  if (!directory.set || port == 0) return Plan{};
  if (directory.broken) return Fail(ENAMETOOLONG);
  if (filter != nullptr) {
    if (filter->broken) return Fail(EINVAL);
    if (!filter->filter.Passes(port)) return Plan{};
  }
  return Unix(target);
}

Plan PlanIpv4(const Ip6& ip, uint16_t port, Operation op, const Config& config) {
  const uint8_t* v4 = &ip.bytes[12];
  const bool bind = op == Operation::kBind;
  if (bind && v4[0] == 0 && v4[1] == 0 && v4[2] == 0 && v4[3] == 0) {
    UnixTarget t{UnixTarget::Source::kDirectory2, false, 4, 0, port, true};
    return Gate(config.directory_root2, &config.filter_ipv4_wildcard, port, t);
  }
  // 127.180.0.0/15: 127.180.c.d datagram, 127.181.c.d stream.
  if (v4[0] == 127 && (v4[1] & 0xfe) == 180) {
    if (!bind && !config.connect_ipv4) return Plan{};
    UnixTarget t{UnixTarget::Source::kDirectory2,
                 v4[1] == 181,
                 static_cast<uint16_t>(4000 + v4[2]),
                 v4[3],
                 port,
                 true};
    return Gate(config.directory_root2, bind ? &config.filter_ipv4 : nullptr, port, t);
  }
  return Plan{};
}

Plan PlanLinkLocal(const Ip6& ip, uint16_t port) {
  Plan plan;
  plan.kind = Plan::Kind::kLinkLocal;
  sockaddr_in6& out = plan.link_local;
  out.sin6_family = AF_INET6;
  out.sin6_port = htons(port);
  out.sin6_scope_id = static_cast<uint32_t>(ip.group(2)) << 16 | ip.group(3);
  Ip6 ll = ip;
  ll.bytes[0] = 0xfe;
  ll.bytes[1] = 0x80;
  std::memset(&ll.bytes[2], 0, 6);
  out.sin6_addr = ll.ToIn6();
  return plan;
}

}  // namespace

Plan PlanAddress(const sockaddr* addr, socklen_t len, Operation op, const Config& config) {
  Ip6 ip;
  uint16_t port = 0;
  uint32_t scope_id = 0;
  if (!Normalize(addr, len, &ip, &port, &scope_id)) return Plan{};
  if (scope_id != 0 && !config.clear_scope_id) return Plan{};
  if (ip.IsV4Mapped()) return PlanIpv4(ip, port, op, config);
  if (ip.IsUnspecified()) {
    if (op != Operation::kBind) return Plan{};
    UnixTarget t{UnixTarget::Source::kDirectory2, false, 0, 0, port, true};
    return Gate(config.directory_root2, &config.filter_ipv6_wildcard, port, t);
  }
  if (ip.group(0) != kFe8f) return Plan{};
  if (ip.group(1) == 1) return PlanLinkLocal(ip, port);
  // fe8f::X:YYYY:ZZZZ with groups 1-3 reserved (zero) and X in 0..3.
  if (ip.group(1) != 0 || ip.group(2) != 0 || ip.group(3) != 0 || ip.group(4) != 0) {
    return Plan{};
  }
  const uint16_t x = ip.group(5);
  if (x > 3) return Plan{};
  const FilterSetting* filter = op == Operation::kBind ? &config.filter_ipv6 : nullptr;
  UnixTarget t;
  t.stream = (x & 1) != 0;
  t.a = ip.group(6);
  t.b = ip.group(7);
  t.port = port;
  t.source = x >= 2 ? UnixTarget::Source::kDirectory2 : UnixTarget::Source::kRecordFile;
  const DirectorySetting& directory = x >= 2 ? config.directory_root2 : config.directory_root;
  Plan plan = Gate(directory, filter, port, t);
  if (plan.kind != Plan::Kind::kPassThrough || op != Operation::kBind) return plan;
  // fe8f::/16 is link-local: without a scope id the kernel refuses the bind
  // (EINVAL). It can only ever work redirected; the caller says why not.
  plan.kind = Plan::Kind::kUnredirected;
  if (port == 0) {
    plan.why = Plan::Why::kPortZero;
  } else if (!directory.set) {
    plan.why = Plan::Why::kUnset;
    plan.variable = x >= 2 ? "SKBOX_DIRECTORY_ROOT2" : "SKBOX_DIRECTORY_ROOT";
  } else {
    plan.why = Plan::Why::kFiltered;
    plan.variable = "SKBOX_PORT_FILTER_IPV6";
  }
  return plan;
}

}  // namespace sbx::preload
