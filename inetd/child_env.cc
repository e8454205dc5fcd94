#include "inetd/child_env.h"

#include <sys/socket.h>

#include <array>
#include <cstdio>
#include <string_view>

#include "engine/core/str_cat.h"
#include "inetd/options.h"

namespace sbx::inetd {
namespace {

constexpr std::array<std::string_view, 7> kOurNames = {
    "PROTO",         "TCPLOCALIP",  "TCPLOCALPORT", "TCPREMOTEIP",
    "TCPREMOTEPORT", "REMOTE_ADDR", "REMOTE_PORT"};

std::string_view NameOf(std::string_view entry) { return entry.substr(0, entry.find('=')); }

bool IsOurs(std::string_view entry) {
  const std::string_view name = NameOf(entry);
  for (std::string_view ours : kOurNames) {
    if (name == ours) return true;
  }
  return false;
}

}  // namespace

SysResult<ConnectionInfo> QueryConnection(int fd) {
  ConnectionInfo info;
  sockaddr_storage local{}, remote{};
  socklen_t local_len = sizeof(local), remote_len = sizeof(remote);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) {
    return SysResult<ConnectionInfo>::FromErrno();
  }
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &remote_len) != 0) {
    return SysResult<ConnectionInfo>::FromErrno();
  }
  auto l = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&local), local_len);
  auto r = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&remote), remote_len);
  if (l && r) {
    info.is_ip = true;
    info.local = *l;
    info.remote = *r;
  }
  return info;
}

std::string FormatIpForEnv(const Ip6& ip) {
  if (ip.IsV4Mapped()) {
    char text[16];
    std::snprintf(text, sizeof(text), "%u.%u.%u.%u", ip.bytes[12], ip.bytes[13], ip.bytes[14],
                  ip.bytes[15]);
    return text;
  }
  return FormatIp6(ip);
}

std::string SourceKey(const ConnectionInfo& info, int prefix6) {
  if (!info.is_ip) return "";
  const Ip6& ip = info.remote.ip;
  if (ip.IsV4Mapped() || prefix6 >= 128) return FormatIpForEnv(ip);
  return StrCat(FormatIp6(ip & PrefixMask(prefix6)), "/", prefix6);
}

std::vector<std::string> ConnectionVariables(const ConnectionInfo& info) {
  if (!info.is_ip) return {"PROTO=UNIX"};
  const std::string local_ip = FormatIpForEnv(info.local.ip);
  const std::string remote_ip = FormatIpForEnv(info.remote.ip);
  return {
      "PROTO=TCP",
      StrCat("TCPLOCALIP=", local_ip),
      StrCat("TCPLOCALPORT=", info.local.port),
      StrCat("TCPREMOTEIP=", remote_ip),
      StrCat("TCPREMOTEPORT=", info.remote.port),
      StrCat("REMOTE_ADDR=", remote_ip),
      StrCat("REMOTE_PORT=", info.remote.port),
  };
}

std::vector<std::string> BaseEnvironment(const char* const* environ, bool drop_connection_names) {
  std::vector<std::string> base;
  for (const char* const* p = environ; p != nullptr && *p != nullptr; ++p) {
    if (drop_connection_names && IsOurs(*p)) continue;
    if (NameOf(*p) == kAcknowledgeVariable || NameOf(*p) == kTakeListenerVariable) continue;
    base.emplace_back(*p);
  }
  return base;
}

ChildEnvironment::ChildEnvironment(const std::vector<std::string>& base,
                                   std::vector<std::string> extra)
    : strings_(std::move(extra)) {
  strings_.insert(strings_.begin(), base.begin(), base.end());
  pointers_.reserve(strings_.size() + 1);
  for (std::string& s : strings_) pointers_.push_back(s.data());
  pointers_.push_back(nullptr);
}

}  // namespace sbx::inetd
