#include "engine/daemon/router.h"

#include <netinet/in.h>

#include "engine/core/address_ops.h"
#include "engine/core/path_substitution.h"

namespace sbx {

Router::Router(const Options& options, WorkerStats* stats, BackendTable* backends)
    : options_(options), stats_(stats), backends_(backends) {
  ComputeNeeds();
}

void Router::SetTable(std::shared_ptr<const RouteTable> table) {
  if (options_.has_forced_action()) return;
  table_ = std::move(table);
  by_path_index_.assign(table_->unix_paths().size(), nullptr);
  path_has_tokens_.clear();
  for (const std::string& path : table_->unix_paths()) {
    path_has_tokens_.push_back(options_.substitute && HasSubstitutionTokens(path));
  }
  ComputeNeeds();
}

void Router::ComputeNeeds() {
  if (options_.forced_path) {
    needs_local_ = options_.substitute && HasSubstitutionTokens(*options_.forced_path);
    needs_remote_ = false;
    return;
  }
  if (options_.forced_fd || !table_) {
    needs_local_ = needs_remote_ = false;
    return;
  }
  const PackedTuple& used = table_->fields_used();
  needs_local_ = used.HasLocalAddress() || used.HasLocalPort();
  for (bool tokens : path_has_tokens_) needs_local_ = needs_local_ || tokens;
  needs_remote_ = used.HasRemoteAddress() || used.HasRemotePort();
}

Backend* Router::Route(int fd, const ListenerInfo* listener, const SocketAddress* remote,
                       uint64_t now_ns, DropReason* reason) {
  ConnTuple tuple;
  if (needs_local_) {
    if (listener != nullptr && listener->address_known && listener->port_known) {
      tuple.local = listener->local.ip;
      tuple.lport = listener->local.port;
    } else {
      Bump(stats_->getsockname_calls);
      auto local = LocalAddressOf(fd);
      if (!local.ok()) {
        *reason = DropReason::kSocketError;
        return nullptr;
      }
      tuple.local = local->ip;
      tuple.lport = local->port;
    }
  }
  if (needs_remote_) {
    if (remote != nullptr) {
      tuple.remote = remote->ip;
      tuple.rport = remote->port;
    } else {
      Bump(stats_->getpeername_calls);
      auto peer = PeerAddressOf(fd);
      if (!peer.ok()) {
        *reason = DropReason::kSocketError;
        return nullptr;
      }
      tuple.remote = peer->ip;
      tuple.rport = peer->port;
    }
  }

  if (options_.forced_fd) return backends_->ForFd(*options_.forced_fd);
  if (options_.forced_path) {
    if (!needs_local_)
      return backends_->ForPath(*options_.forced_path, *options_.forced_path, now_ns);
    const std::string path = SubstitutePath(*options_.forced_path, tuple.local, tuple.lport);
    return backends_->ForPath(path, *options_.forced_path, now_ns);
  }
  const Action action = table_->Lookup(tuple);
  switch (action.kind) {
    case ActionKind::kUnix: {
      const std::string& path = table_->unix_paths()[action.arg];
      if (path_has_tokens_[action.arg]) {
        return backends_->ForPath(SubstitutePath(path, tuple.local, tuple.lport), path, now_ns);
      }
      Backend*& cached = by_path_index_[action.arg];
      if (cached == nullptr) cached = backends_->ForPath(path, path, now_ns);
      return cached;
    }
    case ActionKind::kFd:
      return backends_->ForFd(static_cast<int>(action.arg));
    case ActionKind::kFail:
      *reason = DropReason::kFail;
      return nullptr;
    default:
      *reason = DropReason::kNoDecision;
      return nullptr;
  }
}

}  // namespace sbx
