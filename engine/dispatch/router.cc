#include "engine/dispatch/router.h"

#include <netinet/in.h>

#include "engine/core/address_ops.h"
#include "engine/core/path_substitution.h"

namespace sbx {

Router::Router(const WorkerConfig& config, WorkerStats* stats, BackendTable* backends)
    : config_(config), stats_(stats), backends_(backends) {
  ComputeNeeds();
}

void Router::SetTable(std::shared_ptr<const RouteTable> table) {
  if (config_.has_forced_action()) return;
  table_ = std::move(table);
  by_path_index_.assign(table_->unix_paths().size(), nullptr);
  path_has_tokens_.clear();
  for (const std::string& path : table_->unix_paths()) {
    path_has_tokens_.push_back(config_.substitute && HasSubstitutionTokens(path));
  }
  ComputeNeeds();
}

void Router::ComputeNeeds() {
  if (config_.forced_path) {
    needs_local_ = config_.substitute && HasSubstitutionTokens(*config_.forced_path);
    needs_remote_ = false;
    return;
  }
  if (config_.forced_fd || !table_) {
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

  if (config_.forced_fd) return backends_->ForFd(*config_.forced_fd);
  if (config_.forced_path) {
    if (!needs_local_)
      return backends_->ForPath(*config_.forced_path, *config_.forced_path, now_ns);
    const std::string path = SubstitutePath(*config_.forced_path, tuple.local, tuple.lport);
    return backends_->ForPath(path, *config_.forced_path, now_ns);
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
