#include "engine/daemon/address_claim.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "engine/core/str_cat.h"
#include "engine/sys/socket_ops.h"

namespace sbx {
namespace {

// Connections of refused claimants wait, never accepted, in the lock's
// queue; once it is full, claimants rely on the probe alone.
constexpr int kLockBacklog = 64;

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

// The credentials of the lock's holder (those of the process that called
// listen() on it), if it answers a connection at once.
std::optional<ucred> LockHolder(const sockaddr* sa, socklen_t len) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe || ::connect(probe.get(), sa, len) != 0) return std::nullopt;
  ucred cred{};
  socklen_t cred_len = sizeof(cred);
  if (::getsockopt(probe.get(), SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0)
    return std::nullopt;
  return cred;
}

}  // namespace

absl::StatusOr<UniqueFd> LockAddress(const SocketAddress& address) {
  const std::string where = FormatHostPort(address);
  UniqueFd lock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!lock) return absl::ErrnoToStatus(errno, StrCat("socket for the lock on ", where));
  // Abstract name: sun_path[0] is NUL, the name is the rest (no file).
  const std::string name = StrCat("socketbox-uring listen ", where);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  const size_t name_len = std::min(name.size(), sizeof(un.sun_path) - 1);
  std::memcpy(un.sun_path + 1, name.data(), name_len);
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name_len);
  const auto* sa = reinterpret_cast<const sockaddr*>(&un);
  if (::bind(lock.get(), sa, len) == 0) {
    // Listening, so that a later claimant can ask who holds it.
    if (::listen(lock.get(), kLockBacklog) != 0) {
      return absl::ErrnoToStatus(errno, StrCat("lock on ", where));
    }
    return lock;
  }
  if (errno != EADDRINUSE) return absl::ErrnoToStatus(errno, StrCat("lock on ", where));
  // Held. Anyone in the network namespace can bind an abstract name, so it
  // counts only when its holder is root or our own user: another user
  // squatting the name must not keep the daemon from starting.
  std::optional<ucred> holder = LockHolder(sa, len);
  if (holder && (holder->uid == 0 || holder->uid == ::geteuid())) {
    return absl::ErrnoToStatus(EADDRINUSE,
                               StrCat("bind ", where, " (a socketbox, pid ", holder->pid,
                                      " at its start, listens there; -r on both shares the port)"));
  }
  std::fprintf(stderr, "socketbox: warning: lock @%s for %s is held by %s: ignored\n", name.c_str(),
               where.c_str(),
               holder ? StrCat("uid ", holder->uid, " (pid ", holder->pid, ")").c_str()
                      : "a process that does not answer");
  return UniqueFd();
}

absl::StatusOr<UniqueFd> ClaimAddress(const SocketAddress& address, const ClaimFlags& flags) {
  const std::string where = FormatHostPort(address);
  auto lock = LockAddress(address);
  if (!lock.ok()) return lock.status();
  // Also when the lock was not ours to take: the probe still sees listeners.
  if (absl::Status s = Probe(address, flags, where); !s.ok()) return s;
  return lock;
}

absl::Status OwnByPortGroup(int fd) {
  if (::fchown(fd, kPortGroupOwner, static_cast<gid_t>(-1)) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("fchown a listener to uid ", kPortGroupOwner));
  }
  return absl::OkStatus();
}

absl::Status CanOwnPortGroups() {
  UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd) fd.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd) return absl::ErrnoToStatus(errno, "socket(SOCK_STREAM)");
  return OwnByPortGroup(fd.get());
}

}  // namespace sbx
