#include "engine/daemon/listeners.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <map>

#include "engine/core/address_ops.h"
#include "engine/core/str_cat.h"
#include "engine/daemon/address_claim.h"
#include "engine/daemon/systemd.h"
#include "engine/sys/socket_ops.h"

namespace sbx {
namespace {

bool IsWildcard(const SocketAddress& a) {
  return a.ip.IsUnspecified() || (a.family == AF_INET && a.ip == *ParseIp6("::ffff:0.0.0.0"));
}

ListenerInfo DescribeListener(int fd, bool transparent) {
  ListenerInfo info;
  info.fd = fd;
  auto local = LocalAddressOf(fd);
  if (local.ok()) {
    info.local = *local;
    info.address_known = !transparent && !IsWildcard(*local);
    info.port_known = !transparent && local->port != 0;
  }
  return info;
}

struct BindFlags {
  bool transparent, freebind, reuseaddr, reuseport;
  bool own_group = false;  // closed to other programs (address_claim.h)
};

absl::StatusOr<UniqueFd> Bind(const SocketAddress& address, const BindFlags& f) {
  const std::string where = FormatHostPort(address);
  UniqueFd fd(::socket(address.family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd) return absl::ErrnoToStatus(errno, StrCat("socket for ", where));
  const bool v6 = address.family == AF_INET6;
  auto set = [&](int level, int name, const char* what) -> absl::Status {
    SysStatus s = SetIntOption(fd.get(), level, name, 1);
    if (!s.ok()) return absl::ErrnoToStatus(s.error(), StrCat("setsockopt ", what, " on ", where));
    return absl::OkStatus();
  };
  absl::Status s;
  if (f.transparent)
    s.Update(
        set(v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, "TRANSPARENT"));
  if (f.freebind)
    s.Update(set(v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_FREEBIND : IP_FREEBIND, "FREEBIND"));
  if (f.reuseaddr) s.Update(set(SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR"));
  if (f.reuseport) s.Update(set(SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT"));
  if (f.own_group) s.Update(OwnByPortGroup(fd.get()));
  if (!s.ok()) return s;
  sockaddr_storage ss;
  const socklen_t len = address.ToSockaddr(&ss);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return absl::ErrnoToStatus(errno, StrCat("bind ", where));
  }
  return fd;
}

void WarnNoExactListener(const SocketAddress& address, const absl::Status& why, const char* note) {
  std::fprintf(stderr, "socketbox: no exact listener for %s: %s%s\n",
               FormatHostPort(address).c_str(), std::string(why.message()).c_str(), note);
}

// The (address, port) pairs worth an exact listener: each address the table
// names exactly, on each port of an IPv6 wildcard listener that the naming
// rule or map key can match (a rule for port 80 gets no listener on 443).
// At most `limit` pairs.
std::vector<SocketAddress> ExactPairs(const RouteTable& table,
                                      const std::vector<SocketAddress>& listeners, size_t limit) {
  std::vector<SocketAddress> pairs;
  for (const RouteTable::ExactLocal& e : table.ExactLocals()) {
    for (const SocketAddress& base : listeners) {
      if (!IsWildcard(base) || base.family != AF_INET6 || base.port == 0) continue;
      if (e.port && *e.port != base.port) continue;
      const SocketAddress pair{AF_INET6, e.ip, base.port, 0};
      const bool seen = std::any_of(pairs.begin(), pairs.end(), [&](const SocketAddress& p) {
        return p.ip == pair.ip && p.port == pair.port;
      });
      if (!seen && pairs.size() < limit) pairs.push_back(pair);
    }
  }
  return pairs;
}

}  // namespace

absl::StatusOr<ListenerSet> OpenListeners(const Options& o, int workers, const RouteTable* table) {
  ListenerSet set;
  set.per_worker.resize(static_cast<size_t>(std::max(workers, 1)));
  auto share = [&](int fd, const std::string& what) {
    for (auto& w : set.per_worker) w.push_back(DescribeListener(fd, o.transparent));
    set.all_fds.push_back(fd);
    set.descriptions.push_back(what);
  };

  // Inherited sockets are shared by all workers.
  if (o.inherited_fd >= 0) {
    if (::fcntl(o.inherited_fd, F_GETFD) < 0) {
      return absl::InvalidArgumentError(
          StrCat("-s ", o.inherited_fd, ": not an open file descriptor"));
    }
    ::fcntl(o.inherited_fd, F_SETFD, FD_CLOEXEC);
    set.exec_fd = o.inherited_fd;
    share(o.inherited_fd, StrCat("inherited fd ", o.inherited_fd));
    return set;
  }
  if (!o.exec_mode) {
    std::vector<InheritedListener> systemd = TakeSystemdListeners();
    if (!systemd.empty()) {
      for (const InheritedListener& l : systemd)
        share(l.fd, StrCat("systemd fd ", l.fd, " (", l.name, ")"));
      return set;
    }
  }

  std::vector<SocketAddress> addresses;
  if (o.address_given || o.listen.empty()) addresses.push_back(o.address);
  addresses.insert(addresses.end(), o.listen.begin(), o.listen.end());

  // Exact-address listeners go beside each wildcard listener of the
  // engine's; a specific and a wildcard listener on one port coexist only
  // with SO_REUSEPORT on both (SO_REUSEADDR stops at listen time).
  std::vector<SocketAddress> exact;
  if (!o.exec_mode && table != nullptr && !o.transparent && o.exact_listeners > 0) {
    exact = ExactPairs(*table, addresses, static_cast<size_t>(o.exact_listeners));
  }
  // One socket per worker per address: SO_REUSEPORT spreads connections.
  bool copies = !o.exec_mode && workers > 1;
  // A group the user did not ask for (-r) must be closed to everyone else;
  // where it cannot be (address_claim.h), the engine makes none: workers
  // share each listener, and no exact-address listeners.
  if (!o.reuseport && (copies || !exact.empty())) {
    if (absl::Status can = CanOwnPortGroups(); !can.ok()) {
      std::fprintf(stderr,
                   "socketbox: workers share one listener per address, and no exact-address "
                   "listeners: without -r, the port must stay closed to other programs, "
                   "and %s\n",
                   std::string(can.message()).c_str());
      copies = false;
      exact.clear();
    }
  }
  const bool own_group = !o.reuseport && (copies || !exact.empty());
  const BindFlags flags{o.transparent, o.freebind, o.reuseaddr, o.reuseport || own_group,
                        own_group};
  // SO_REUSEPORT the user did not ask for must not let a second daemon in.
  const bool claim = own_group;
  auto place = [&](UniqueFd fd, int worker, bool transparent) {
    const int raw = fd.get();
    set.owned.push_back(std::move(fd));
    set.all_fds.push_back(raw);
    if (copies) {
      set.per_worker[static_cast<size_t>(worker)].push_back(DescribeListener(raw, transparent));
    } else {
      for (auto& per : set.per_worker) per.push_back(DescribeListener(raw, transparent));
    }
    return raw;
  };
  for (const SocketAddress& address : addresses) {
    if (claim && address.port != 0) {
      auto lock = ClaimAddress(address, {o.transparent, o.freebind, o.reuseaddr});
      if (!lock.ok()) return lock.status();
      set.owned.push_back(std::move(*lock));
    }
    for (int w = 0; w < (copies ? workers : 1); ++w) {
      auto fd = Bind(address, flags);
      if (!fd.ok()) return fd.status();
      const int raw = place(std::move(*fd), w, o.transparent);
      if (set.exec_fd < 0) set.exec_fd = raw;
    }
    set.descriptions.push_back(FormatHostPort(address) + (copies ? StrCat(" x", workers) : ""));
  }
  int made = 0;
  for (const SocketAddress& address : exact) {
    UniqueFd lock;
    if (claim) {
      // The lock only: a probe would meet our own wildcard copies (with -R).
      auto locked = LockAddress(address);
      if (!locked.ok()) {
        WarnNoExactListener(address, locked.status(), "");
        continue;
      }
      lock = std::move(*locked);
    }
    std::vector<UniqueFd> bound;
    for (int w = 0; w < (copies ? workers : 1); ++w) {
      auto fd = Bind(address, {false, true, o.reuseaddr, true, own_group});
      if (!fd.ok()) {
        WarnNoExactListener(address, fd.status(), " (its connections use getsockname)");
        bound.clear();
        break;
      }
      bound.push_back(std::move(*fd));
    }
    if (bound.empty()) continue;
    if (lock) set.owned.push_back(std::move(lock));
    for (size_t w = 0; w < bound.size(); ++w) {
      place(std::move(bound[w]), static_cast<int>(w), false);
    }
    ++made;
  }
  if (made > 0) set.descriptions.push_back(StrCat(made, " exact-address listener(s)"));
  return set;
}

ListenerSet AdoptListeners(std::vector<UniqueFd> fds, int workers, const Options& o) {
  ListenerSet set;
  set.per_worker.resize(static_cast<size_t>(std::max(workers, 1)));
  // The predecessor's SO_REUSEPORT copies of one address: one per worker
  // when there are as many copies as workers (the kernel then spreads the
  // connections), else every worker shares every copy.
  std::map<std::string, std::vector<int>> by_address;
  for (UniqueFd& fd : fds) {
    auto local = LocalAddressOf(fd.get());
    by_address[local.ok() ? FormatHostPort(*local) : StrCat("fd ", fd.get())].push_back(fd.get());
    set.all_fds.push_back(fd.get());
    set.owned.push_back(std::move(fd));
  }
  for (const auto& [address, copies] : by_address) {
    const bool one_each = copies.size() == set.per_worker.size();
    for (size_t c = 0; c < copies.size(); ++c) {
      for (size_t w = 0; w < set.per_worker.size(); ++w) {
        if (!one_each || w == c)
          set.per_worker[w].push_back(DescribeListener(copies[c], o.transparent));
      }
    }
    set.descriptions.push_back(
        StrCat("handed-over ", address, copies.size() > 1 ? StrCat(" x", copies.size()) : ""));
  }
  return set;
}

absl::Status StartListening(const ListenerSet& set, int backlog) {
  for (int fd : set.all_fds) {
    if (::listen(fd, backlog) != 0) return absl::ErrnoToStatus(errno, StrCat("listen on fd ", fd));
  }
  return absl::OkStatus();
}

}  // namespace sbx
