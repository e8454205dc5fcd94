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
#ifndef SBX_ENGINE_DAEMON_ADDRESS_CLAIM_H_
#define SBX_ENGINE_DAEMON_ADDRESS_CLAIM_H_

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

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_ADDRESS_CLAIM_H_
