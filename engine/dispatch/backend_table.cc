#include "engine/dispatch/backend_table.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "engine/core/address_ops.h"

namespace sbx {
namespace {

constexpr uint32_t kFirstBackoffMs = 20;
constexpr uint32_t kMaxBackoffMs = 1000;
constexpr uint64_t kLogIntervalNs = 5'000'000'000;
constexpr uint64_t kRedeliveryLogNs = 1'000'000'000;
constexpr uint64_t kMsNs = 1'000'000;

}  // namespace

BackendTable::BackendTable(StatsRegistry* stats, size_t max_substituted, FdReserve* reserve)
    : stats_(stats), max_substituted_(max_substituted), reserve_(reserve) {}

Backend* BackendTable::ForPath(std::string_view path, std::string_view counter_key,
                               uint64_t now_ns) {
  auto it = by_path_.find(absl::string_view(path.data(), path.size()));
  if (it == by_path_.end()) {
    const bool substituted = path != counter_key;
    if (substituted && substituted_count_ >= max_substituted_) EvictIdleSubstituted();
    auto backend = std::make_unique<Backend>();
    backend->path = std::string(path);
    backend->substituted = substituted;
    backend->delivered = stats_->BackendCounter(counter_key);
    it = by_path_.emplace(std::string(path), std::move(backend)).first;
    if (substituted) ++substituted_count_;
    Connect(it->second.get(), now_ns);
  }
  it->second->last_used = ++use_clock_;
  return it->second.get();
}

Backend* BackendTable::ForFd(int fd) {
  auto it = by_fd_.find(fd);
  if (it == by_fd_.end()) {
    auto backend = std::make_unique<Backend>();
    backend->borrowed_fd = fd;
    backend->delivered = stats_->BackendCounter("fd:" + std::to_string(fd));
    it = by_fd_.emplace(fd, std::move(backend)).first;
  }
  return it->second.get();
}

BackendTable::~BackendTable() {
  for (auto& [path, b] : by_path_) Retire(b.get());
}

bool BackendTable::Connect(Backend* b, uint64_t now_ns) {
  auto connect = [&] { return ConnectUnixDatagram(b->path); };
  SysResult<UniqueFd> fd = connect();
  if (!fd.ok() && reserve_ != nullptr && (fd.error() == EMFILE || fd.error() == ENFILE)) {
    // Our own fd table is full (accepted connections took it): use the
    // reserve rather than call a healthy backend down.
    reserve_->Open([&] {
      fd = connect();
      if (fd.ok()) return fd->get();
      errno = fd.error();
      return -1;
    });
  }
  if (fd.ok()) {
    // A name the receiver can answer (abstract, chosen by the kernel).
    // Substituted (-U) backends are left out: they come and go with the
    // cache, and an answer could outlive them (docs/receiver-protocol.md).
    Retire(b);  // the name of a socket MarkDown did not retire (none: first use)
    b->socket = std::move(fd.value());
    if (receiver_replies_ && !b->substituted) NameForAnswers(b, now_ns);
    ++b->generation;
    b->receiver = ReceiverState{};
    b->down = false;
    b->backoff_ms = 0;
    return true;
  }
  b->down = true;
  b->last_error = fd.error();
  if (IsResourceShortage(b->last_error)) {
    // Not the backend's fault: try again soon, without backing off.
    b->retry_at_ns = now_ns + kMsNs;
    LogTrouble(b, "cannot be reached for lack of the daemon's own resources", b->last_error,
               now_ns);
    return false;
  }
  b->backoff_ms = b->backoff_ms == 0 ? kFirstBackoffMs : std::min(b->backoff_ms * 2, kMaxBackoffMs);
  b->retry_at_ns = now_ns + b->backoff_ms * kMsNs;
  LogTrouble(b, "unavailable", b->last_error, now_ns);
  return false;
}

void BackendTable::MarkDown(Backend* b, int err, uint64_t now_ns) {
  if (!b->reconnectable()) return;
  if (!b->down) {
    b->down = true;
    b->backoff_ms = 0;
    b->retry_at_ns = now_ns;  // a restarted backend is usually back at once
    Retire(b);
  }
  b->last_error = err;
  LogTrouble(b, "went away", err, now_ns);
}

void BackendTable::NameForAnswers(Backend* b, uint64_t now_ns) {
  const sa_family_t family = AF_UNIX;
  if (::bind(b->socket.get(), reinterpret_cast<const sockaddr*>(&family), sizeof(family)) != 0) {
    LogTrouble(b, "socket could not be named for answers", errno, now_ns);
    return;
  }
  if (relay_ == nullptr) return;
  sockaddr_un name{};
  socklen_t len = sizeof name;
  if (::getsockname(b->socket.get(), reinterpret_cast<sockaddr*>(&name), &len) != 0 ||
      len <= offsetof(sockaddr_un, sun_path)) {
    return;
  }
  b->reply_name.assign(name.sun_path, len - offsetof(sockaddr_un, sun_path));
  relay_->Name(relay_worker_, b->reply_name);
}

// The socket goes (closed by CloseRetired), and with it its name: relayed
// answers to it no longer count.
void BackendTable::Retire(Backend* b) {
  if (!b->reply_name.empty()) {
    if (relay_ != nullptr) relay_->Unname(b->reply_name);
    b->reply_name.clear();
  }
  if (b->socket) retired_.push_back(std::move(b->socket));
}

bool BackendTable::TryReconnect(Backend* b, uint64_t now_ns) {
  if (!b->down) return true;
  if (now_ns < b->retry_at_ns) return false;
  return Connect(b, now_ns);
}

void BackendTable::LogTrouble(Backend* b, const char* what, int err, uint64_t now_ns) {
  if (b->last_log_ns != 0 && now_ns - b->last_log_ns < kLogIntervalNs) return;
  b->last_log_ns = now_ns;
  const std::string name = b->borrowed_fd >= 0 ? "fd " + std::to_string(b->borrowed_fd) : b->path;
  std::fprintf(stderr,
               "socketbox: backend %s %s: %s (connections wait up to the dispatch "
               "timeout, then are closed and counted)\n",
               name.c_str(), what, std::strerror(err));
}

void BackendTable::LogRedelivery(Backend* b, uint64_t redelivered, uint64_t now_ns) {
  b->redelivered_unlogged += redelivered;
  if (b->redelivered_unlogged == 0) return;
  if (b->last_redelivery_log_ns != 0 && now_ns - b->last_redelivery_log_ns < kRedeliveryLogNs) {
    return;
  }
  b->last_redelivery_log_ns = now_ns;
  const std::string name = b->borrowed_fd >= 0 ? "fd " + std::to_string(b->borrowed_fd) : b->path;
  std::fprintf(stderr,
               "socketbox: backend %s: %llu connection(s) its receiver had not taken are sent "
               "again to the next receiver there, within their dispatch timeout\n",
               name.c_str(), static_cast<unsigned long long>(b->redelivered_unlogged));
  b->redelivered_unlogged = 0;
}

void BackendTable::EvictIdleSubstituted() {
  // Drop the least recently used idle half; never one that is in use.
  std::vector<std::pair<uint64_t, std::string>> idle;
  for (auto& [path, b] : by_path_) {
    if (b->substituted && !b->dispatch.busy()) idle.emplace_back(b->last_used, path);
  }
  std::sort(idle.begin(), idle.end());
  for (size_t i = 0; i < idle.size() / 2 + 1 && i < idle.size(); ++i) {
    by_path_.erase(idle[i].second);
    if (substituted_count_ > 0) --substituted_count_;
  }
}

}  // namespace sbx
