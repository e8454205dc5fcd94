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

namespace {

// Inherited sockets (-s, systemd's) are shared by all workers. False when
// there are none: the engine binds its own.
absl::StatusOr<bool> TakeInherited(const Options& o, ListenerSet* set) {
  auto share = [&](int fd, const std::string& what) {
    for (auto& w : set->per_worker) w.push_back(DescribeListener(fd, o.transparent));
    set->all_fds.push_back(fd);
    set->descriptions.push_back(what);
  };
  if (o.inherited_fd >= 0) {
    if (::fcntl(o.inherited_fd, F_GETFD) < 0) {
      return absl::InvalidArgumentError(
          StrCat("-s ", o.inherited_fd, ": not an open file descriptor"));
    }
    ::fcntl(o.inherited_fd, F_SETFD, FD_CLOEXEC);
    set->exec_fd = o.inherited_fd;
    share(o.inherited_fd, StrCat("inherited fd ", o.inherited_fd));
    return true;
  }
  if (o.exec_mode) return false;
  std::vector<InheritedListener> systemd = TakeSystemdListeners();
  for (const InheritedListener& l : systemd) {
    share(l.fd, StrCat("systemd fd ", l.fd, " (", l.name, ")"));
  }
  return !systemd.empty();
}

// How the engine binds its own listeners: one socket per worker per address
// (SO_REUSEPORT spreads connections), and whether the SO_REUSEPORT groups
// are the engine's own, closed to other programs (no -r: address_claim.h).
struct BindPlan {
  int workers = 1;
  bool copies = false;
  bool own_group = false;
};

BindPlan PlanBinds(const Options& o, int workers, std::vector<SocketAddress>* exact) {
  BindPlan plan;
  plan.workers = workers;
  plan.copies = !o.exec_mode && workers > 1;
  // Where a group cannot be closed to others, the engine makes none: the
  // workers share each listener, and no exact-address listeners.
  if (!o.reuseport && (plan.copies || !exact->empty())) {
    if (absl::Status can = CanOwnPortGroups(); !can.ok()) {
      std::fprintf(stderr,
                   "socketbox: workers share one listener per address, and no exact-address "
                   "listeners: without -r, the port must stay closed to other programs, "
                   "and %s\n",
                   std::string(can.message()).c_str());
      plan.copies = false;
      exact->clear();
    }
  }
  plan.own_group = !o.reuseport && (plan.copies || !exact->empty());
  return plan;
}

// Adds a bound socket to the set: worker `worker`'s own copy, or shared.
int Place(UniqueFd fd, int worker, bool transparent, const BindPlan& plan, ListenerSet* set) {
  const int raw = fd.get();
  set->owned.push_back(std::move(fd));
  set->all_fds.push_back(raw);
  if (plan.copies) {
    set->per_worker[static_cast<size_t>(worker)].push_back(DescribeListener(raw, transparent));
  } else {
    for (auto& per : set->per_worker) per.push_back(DescribeListener(raw, transparent));
  }
  return raw;
}

// The -l/-p and --listen listeners; any failure is the daemon's.
absl::Status BindAddresses(const Options& o, const std::vector<SocketAddress>& addresses,
                           const BindPlan& plan, ListenerSet* set) {
  const BindFlags flags{o.transparent, o.freebind, o.reuseaddr, o.reuseport || plan.own_group,
                        plan.own_group};
  for (const SocketAddress& address : addresses) {
    // SO_REUSEPORT the user did not ask for must not let a second daemon in.
    if (plan.own_group && address.port != 0) {
      auto lock = ClaimAddress(address, {o.transparent, o.freebind, o.reuseaddr});
      if (!lock.ok()) return lock.status();
      set->owned.push_back(std::move(*lock));
    }
    for (int w = 0; w < (plan.copies ? plan.workers : 1); ++w) {
      auto fd = Bind(address, flags);
      if (!fd.ok()) return fd.status();
      const int raw = Place(std::move(*fd), w, o.transparent, plan, set);
      if (set->exec_fd < 0) set->exec_fd = raw;
    }
    set->descriptions.push_back(FormatHostPort(address) +
                                (plan.copies ? StrCat(" x", plan.workers) : ""));
  }
  return absl::OkStatus();
}

// The exact-address listeners: each one that cannot be made is warned
// about and left out (its connections then cost a getsockname).
void BindExact(const Options& o, const std::vector<SocketAddress>& exact, const BindPlan& plan,
               ListenerSet* set) {
  int made = 0;
  for (const SocketAddress& address : exact) {
    UniqueFd lock;
    if (plan.own_group) {
      // The lock only: a probe would meet our own wildcard copies (with -R).
      auto locked = LockAddress(address);
      if (!locked.ok()) {
        WarnNoExactListener(address, locked.status(), "");
        continue;
      }
      lock = std::move(*locked);
    }
    std::vector<UniqueFd> bound;
    for (int w = 0; w < (plan.copies ? plan.workers : 1); ++w) {
      auto fd = Bind(address, {false, true, o.reuseaddr, true, plan.own_group});
      if (!fd.ok()) {
        WarnNoExactListener(address, fd.status(), " (its connections use getsockname)");
        bound.clear();
        break;
      }
      bound.push_back(std::move(*fd));
    }
    if (bound.empty()) continue;
    if (lock) set->owned.push_back(std::move(lock));
    for (size_t w = 0; w < bound.size(); ++w) {
      Place(std::move(bound[w]), static_cast<int>(w), false, plan, set);
    }
    ++made;
  }
  if (made > 0) set->descriptions.push_back(StrCat(made, " exact-address listener(s)"));
}

}  // namespace

absl::StatusOr<ListenerSet> OpenListeners(const Options& o, int workers, const RouteTable* table) {
  ListenerSet set;
  set.per_worker.resize(static_cast<size_t>(std::max(workers, 1)));
  auto inherited = TakeInherited(o, &set);
  if (!inherited.ok()) return inherited.status();
  if (*inherited) return set;

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
  const BindPlan plan = PlanBinds(o, workers, &exact);
  if (absl::Status s = BindAddresses(o, addresses, plan, &set); !s.ok()) return s;
  BindExact(o, exact, plan, &set);
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
