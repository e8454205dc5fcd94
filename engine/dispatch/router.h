// Router: from an accepted connection to the backend it goes to. Fetches
// only the fields the configuration can look at (no getsockname when the
// listener already knows its address, or when no reachable rule reads the
// local address or port), looks the route up, applies -U substitution and
// finds the backend. Shared by the io_uring and the sync workers.
//
// One per worker thread; not thread-safe.
#ifndef SBX_ENGINE_DISPATCH_ROUTER_H_
#define SBX_ENGINE_DISPATCH_ROUTER_H_

#include <memory>
#include <optional>
#include <vector>

#include "engine/core/address.h"
#include "engine/core/route_table.h"
#include "engine/dispatch/backend_table.h"
#include "engine/dispatch/stats.h"
#include "engine/dispatch/worker_config.h"

namespace sbx {

// What a listening socket already says about its connections.
struct ListenerInfo {
  int fd = -1;
  bool address_known = false;  // bound to one address and not transparent
  bool port_known = false;     // bound to one port and not transparent
  SocketAddress local;
};

class Router {
 public:
  Router(const WorkerConfig& config, WorkerStats* stats, BackendTable* backends);

  // Installs a (new) route table; ignored with a forced action.
  void SetTable(std::shared_ptr<const RouteTable> table);

  bool needs_local() const { return needs_local_; }
  bool needs_remote() const { return needs_remote_; }

  // The backend for connection `fd`, or nullptr with `*reason` set.
  // `listener` may be null (registration mode); `remote` is the peer
  // address when the accept already returned it.
  Backend* Route(int fd, const ListenerInfo* listener, const SocketAddress* remote, uint64_t now_ns,
                 DropReason* reason);

 private:
  void ComputeNeeds();

  const WorkerConfig config_;
  WorkerStats* stats_;
  BackendTable* backends_;
  std::shared_ptr<const RouteTable> table_;
  std::vector<Backend*> by_path_index_;  // per table path, when no substitution
  std::vector<bool> path_has_tokens_;
  bool needs_local_ = false;
  bool needs_remote_ = false;
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_ROUTER_H_
