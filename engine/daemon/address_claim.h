// Refusing a second daemon on an address and port another one already
// serves, as the original did.
//
// The engine binds one SO_REUSEPORT copy of each listener per worker (and
// exact-address listeners beside a wildcard one) even without -r. The
// kernel lets any other socket of the same user that sets SO_REUSEPORT join
// such a group, so a second daemon started on the same address and port
// would silently take a share of the connections; the original (no
// SO_REUSEPORT unless -r) failed with "Address already in use". Before the
// copies are bound, ClaimAddress:
//
//  1. takes a lock: an abstract Unix socket named after the address and
//     port, kept for the daemon's life. Abstract names live in the network
//     namespace, as ports do, and the kernel frees them when the process
//     ends (crash included), so there is no stale lock. A second daemon on
//     the same address and port gets EADDRINUSE, even in the moments
//     between the first one's bind and listen(), which 2. cannot see. The
//     lock listens, so the second one can ask its holder's credentials
//     (SO_PEERCRED) and name its pid; a lock held by another user (anyone
//     can bind an abstract name) is ignored with a warning rather than
//     keeping the daemon from starting.
//  2. probes: binds (and closes) a socket with the listener's options but
//     without SO_REUSEPORT, which fails with EADDRINUSE when anything else
//     already listens there: the original socketbox, another server, a
//     daemon on an overlapping address (a specific one under our wildcard).
//
// Used only when the engine would set SO_REUSEPORT without being asked to:
// not with -r (the user asked to share the port), not for inherited
// sockets (-s, systemd), not with -e.
//
// The lock and the probe keep the engine out of a port another program
// holds; the other way round, a program that binds after the engine
// listens would join the group (same user, SO_REUSEPORT) and silently take
// a share of the connections, where with the original its bind failed with
// EADDRINUSE. The kernel lets a socket join a group, or bind beside one,
// only when its owner (the socket's uid, which fchown(2) sets) is the
// group's. So the engine gives the sockets of such a group an owner no
// process runs as, kPortGroupOwner, before binding them: then every other
// bind on that address and port fails, root's included, while the engine's
// copies and exact-address listeners still form their groups. The owner
// also shows as the uid of the connections accepted there (`ss -e`,
// /proc/net/tcp) and would match an `ip rule uidrange` that names it;
// nothing else reads it.
#ifndef SBX_ENGINE_DAEMON_ADDRESS_CLAIM_H_
#define SBX_ENGINE_DAEMON_ADDRESS_CLAIM_H_

#include <sys/types.h>

#include "absl/status/statusor.h"
#include "engine/core/address.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

struct ClaimFlags {
  bool transparent = false;
  bool freebind = false;
  bool reuseaddr = true;
};

// The lock and the probe: the lock (to keep open while the daemon runs), or
// EADDRINUSE naming the address and what holds it.
absl::StatusOr<UniqueFd> ClaimAddress(const SocketAddress& address, const ClaimFlags& flags);

// The lock alone (for exact-address listeners beside our own wildcard ones).
// An invalid fd when the name is held by another user (ignored, warned).
absl::StatusOr<UniqueFd> LockAddress(const SocketAddress& address);

// (uid_t)-2: by convention no account's (Debian's nobody is 65534).
inline constexpr uid_t kPortGroupOwner = static_cast<uid_t>(-2);

// Gives `fd`, not yet bound, the owner kPortGroupOwner. Fails where the
// uid is not mapped (a user namespace that maps only a few uids: EINVAL).
absl::Status OwnByPortGroup(int fd);

// Whether OwnByPortGroup works here (tried on a fresh socket): else the
// engine makes no SO_REUSEPORT groups of its own.
absl::Status CanOwnPortGroups();

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_ADDRESS_CLAIM_H_
