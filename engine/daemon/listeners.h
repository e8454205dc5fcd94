// The listening sockets: inherited from systemd (LISTEN_FDS) or -s, or bound
// here (-l/-p and --listen), with one SO_REUSEPORT copy per worker when the
// engine binds, plus one listener per (address, port) pair the
// configuration names exactly (IPV6_FREEBIND), so that the kernel's socket
// lookup tells those connections' local address and no getsockname(2) is
// needed. Before binding copies with SO_REUSEPORT the user did not ask for,
// each address is claimed (address_claim.h), so a second daemon is refused.
//
// Binding and listen(2) both happen while privileged, before daemon() and
// the privilege drop (unlike the original, which listened after dropping):
// when `socketbox -d` returns, connections are queued rather than refused,
// and a listen error reaches the parent's exit status.
#ifndef SBX_ENGINE_DAEMON_LISTENERS_H_
#define SBX_ENGINE_DAEMON_LISTENERS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/core/route_table.h"
#include "engine/daemon/options.h"
#include "engine/dispatch/router.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

struct ListenerSet {
  std::vector<std::vector<ListenerInfo>> per_worker;
  std::vector<UniqueFd> owned;            // every socket bound here, and the claim locks
  std::vector<int> all_fds;               // distinct fds to listen() on
  int exec_fd = -1;                       // -e: the one bound socket
  std::vector<std::string> descriptions;  // one per distinct listener, for the log
};

// `table` may be null (forced action): no exact listeners then.
absl::StatusOr<ListenerSet> OpenListeners(const Options& options, int workers,
                                          const RouteTable* table);

// Listeners handed over by a predecessor (handover.h): every worker shares
// every socket, as with systemd's.
ListenerSet AdoptListeners(std::vector<UniqueFd> fds, int workers, const Options& options);

absl::Status StartListening(const ListenerSet& set, int backlog);

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_LISTENERS_H_
