#include "engine/daemon/address_claim.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "engine/core/str_cat.h"
#include "engine/sys/socket_ops.h"

namespace sbx {
namespace {

absl::Status Probe(const SocketAddress& address, const ClaimFlags& f, const std::string& where) {
  UniqueFd probe(::socket(address.family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!probe) return absl::ErrnoToStatus(errno, StrCat("socket for ", where));
  const bool v6 = address.family == AF_INET6;
  // The listener's own options (a failure here is the real bind's to report).
  const int level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
  if (f.transparent)
    (void)SetIntOption(probe.get(), level, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, 1);
  if (f.freebind) (void)SetIntOption(probe.get(), level, v6 ? IPV6_FREEBIND : IP_FREEBIND, 1);
  if (f.reuseaddr) (void)SetIntOption(probe.get(), SOL_SOCKET, SO_REUSEADDR, 1);
  sockaddr_storage ss;
  const socklen_t len = address.ToSockaddr(&ss);
  if (::bind(probe.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno == EADDRINUSE) {
    // Any other bind error is the real bind's to report, in its own words.
    return absl::ErrnoToStatus(EADDRINUSE, StrCat("bind ", where));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<UniqueFd> LockAddress(const SocketAddress& address) {
  const std::string where = FormatHostPort(address);
  UniqueFd lock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!lock) return absl::ErrnoToStatus(errno, StrCat("socket for the lock on ", where));
  // Abstract name: sun_path[0] is NUL, the name is the rest (no file).
  const std::string name = StrCat("socketbox-uring listen ", where);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  const size_t name_len = std::min(name.size(), sizeof(un.sun_path) - 1);
  std::memcpy(un.sun_path + 1, name.data(), name_len);
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name_len);
  if (::bind(lock.get(), reinterpret_cast<sockaddr*>(&un), len) != 0) {
    const int err = errno;
    if (err == EADDRINUSE) {
      return absl::ErrnoToStatus(
          err, StrCat("bind ", where, " (another socketbox listens there, lock @", name,
                      "; -r on both shares the port)"));
    }
    return absl::ErrnoToStatus(err, StrCat("lock on ", where));
  }
  return lock;
}

absl::StatusOr<UniqueFd> ClaimAddress(const SocketAddress& address, const ClaimFlags& flags) {
  const std::string where = FormatHostPort(address);
  auto lock = LockAddress(address);
  if (!lock.ok()) return lock.status();
  if (absl::Status s = Probe(address, flags, where); !s.ok()) return s;
  return lock;
}

}  // namespace sbx
