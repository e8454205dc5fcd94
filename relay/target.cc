#include "relay/target.h"

#include <cstdio>
#include <cstring>

#include "engine/core/str_cat.h"

namespace sbx::relay {
namespace {

bool InPrefix(const TargetSpec& spec, const Ip6& local) {
  const Ip6 mask = PrefixMask(spec.nat64_prefix64 ? 64 : 96);
  return (local & mask) == (spec.nat64_prefix & mask);
}

Ip6 MappedTargetIp(const TargetSpec& spec, const Ip6& local) {
  Ip6 out = spec.tcp.ip;
  const int first_copied = spec.nat64_prefix64 ? 8 : 12;
  for (int i = first_copied; i < 16; ++i) out.bytes[i] = local.bytes[i];
  return out;
}

std::optional<ResolvedTarget> UnixTarget(const std::string& path) {
  ResolvedTarget out;
  out.family = AF_UNIX;
  out.text = path;
  auto* sun = reinterpret_cast<sockaddr_un*>(&out.addr);
  sun->sun_family = AF_UNIX;
  const bool abstract = !path.empty() && path[0] == '@';
  // A filesystem path needs its NUL inside sun_path; an abstract name does not.
  if (path.empty() || path.size() > sizeof(sun->sun_path) - (abstract ? 0 : 1)) return std::nullopt;
  std::memcpy(sun->sun_path, path.data(), path.size());
  if (abstract) sun->sun_path[0] = '\0';
  out.len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  return out;
}

}  // namespace

std::optional<ResolvedTarget> ResolveTarget(const TargetSpec& spec, const SocketAddress* local) {
  if (spec.nat64 && (local == nullptr || !InPrefix(spec, local->ip))) return std::nullopt;
  if (spec.is_unix) {
    if (!spec.nat64) return UnixTarget(spec.unix_path);
    char suffix[10];
    std::snprintf(suffix, sizeof(suffix), "-%02x%02x%02x%02x", local->ip.bytes[12],
                  local->ip.bytes[13], local->ip.bytes[14], local->ip.bytes[15]);
    return UnixTarget(spec.unix_path + suffix);
  }
  SocketAddress target = spec.tcp;
  target.family = AF_INET6;  // IPv4 targets are written ::ffff:a.b.c.d
  if (spec.nat64) {
    target.ip = MappedTargetIp(spec, local->ip);
    if (target.port == 0) target.port = local->port;
  }
  ResolvedTarget out;
  out.family = AF_INET6;
  out.len = target.ToSockaddr(&out.addr);
  out.text = FormatHostPort(target);
  return out;
}

}  // namespace sbx::relay
