#include "engine/kernel/listener_registry.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/core/fd_passing.h"
#include "engine/core/listener_request.h"
#include "engine/core/str_cat.h"
#include "engine/core/unix_address.h"
#include "engine/kernel/steering_image.h"
#include "engine/sys/unix_peer.h"

namespace sbx {
namespace {

void Log(const std::string& line) { std::fprintf(stderr, "socketbox: %s\n", line.c_str()); }

// A socket type check: (domain, type) of `fd`.
bool IsUnixSocketOfType(int fd, int want_type) {
  int domain = 0, type = 0;
  socklen_t dl = sizeof domain, tl = sizeof type;
  return ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) == 0 &&
         ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && domain == AF_UNIX &&
         type == want_type;
}

// The inode of the socket now bound at `path`, seen from here: the peer of
// a datagram socket connected to it.
std::optional<ino_t> BoundSocketInode(const std::string& path) {
  SysResult<UnixAddress> address = MakeUnixAddress(path);
  if (!address.ok()) return std::nullopt;
  UniqueFd probe(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!probe || ::connect(probe.get(), address->sockaddr_ptr(), address->len) != 0) {
    return std::nullopt;
  }
  SysResult<ino_t> peer = UnixPeerInode(probe.get());
  if (!peer.ok()) return std::nullopt;
  return *peer;
}

// Binds a datagram socket at `path`, replacing a stale socket file but not
// a live one.
absl::StatusOr<UniqueFd> BindServerSocket(const std::string& path) {
  SysResult<UnixAddress> address = MakeUnixAddress(path);
  if (!address.ok()) {
    return absl::ErrnoToStatus(address.error(), StrCat("--listener-socket ", path));
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return absl::ErrnoToStatus(errno, "socket(AF_UNIX)");
  if (::bind(fd.get(), address->sockaddr_ptr(), address->len) != 0) {
    if (errno != EADDRINUSE)
      return absl::ErrnoToStatus(errno, StrCat("bind --listener-socket ", path));
    if (BoundSocketInode(path)) {
      return absl::AlreadyExistsError(StrCat("--listener-socket ", path,
                                             ": another daemon serves it (give each daemon its "
                                             "own --listener-socket)"));
    }
    ::unlink(path.c_str());  // stale: nobody is bound there any more
    if (::bind(fd.get(), address->sockaddr_ptr(), address->len) != 0) {
      return absl::ErrnoToStatus(errno, StrCat("bind --listener-socket ", path));
    }
  }
  ::chmod(path.c_str(), 0666);
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ListenerRegistry>> ListenerRegistry::Open(
    SteeringProgram* program, ListenerRegistryConfig config) {
  // The default's directory may not exist yet (/run/socketbox).
  if (const size_t slash = config.socket_path.rfind('/'); slash != std::string::npos && slash > 0) {
    ::mkdir(config.socket_path.substr(0, slash).c_str(), 0755);
  }
  absl::StatusOr<UniqueFd> socket = BindServerSocket(config.socket_path);
  if (!socket.ok()) return socket.status();
  return std::unique_ptr<ListenerRegistry>(
      new ListenerRegistry(program, std::move(config), std::move(*socket)));
}

ListenerRegistry::ListenerRegistry(SteeringProgram* program, ListenerRegistryConfig config,
                                   UniqueFd socket)
    : program_(program),
      config_(std::move(config)),
      socket_(std::move(socket)),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

absl::StatusOr<std::unique_ptr<ListenerRegistry>> ListenerRegistry::Adopt(
    SteeringProgram* program, ListenerRegistryConfig config, AdoptedListeners adopted) {
  std::unique_ptr<ListenerRegistry> registry(
      new ListenerRegistry(program, std::move(config), std::move(adopted.socket)));
  for (AdoptedListeners::Listener& l : adopted.listeners) {
    if (registry->next_slot_ >= SBX_STEER_MAX_BACKENDS) break;
    sockaddr_in6 bound{};
    socklen_t len = sizeof bound;
    if (::getsockname(l.listener.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0) continue;
    Slot& slot = registry->slots_[l.path];
    slot.index = registry->next_slot_++;
    slot.path = l.path;
    if (absl::Status s = program->GuardPort(ntohs(bound.sin6_port)); !s.ok()) return s;
    if (absl::Status s = program->SetListener(slot.index, l.listener.get()); !s.ok()) return s;
    slot.listener = std::move(l.listener);
    slot.in_map = true;
    slot.channels = std::move(l.channels);
    if (slot.channels.empty()) slot.unattended_since = Clock::now();
  }
  return registry;
}

ListenerRegistry::~ListenerRegistry() {
  Stop();
  if (!handed_over_) ::unlink(config_.socket_path.c_str());
}

ListenerHandover ListenerRegistry::Export() {
  Stop();
  ListenerHandover out;
  out.socket = socket_.get();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [path, slot] : slots_) {
    if (!slot.listener) continue;
    ListenerHandover::Listener& l = out.listeners.emplace_back();
    l.path = path;
    l.listener = slot.listener.get();
    for (const UniqueFd& c : slot.channels) l.channels.push_back(c.get());
  }
  return out;
}

void ListenerRegistry::Resume() {
  if (thread_.joinable()) return;
  stop_.store(false);
  Start();
}

absl::StatusOr<std::vector<std::string>> ListenerRegistry::Publish(
    std::shared_ptr<const RouteTable> table) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::vector<std::string>& paths = table->unix_paths();
  auto slot_of = [&](uint32_t i) -> std::optional<uint32_t> {
    auto it = slots_.find(paths[i]);
    if (it != slots_.end()) return it->second.index;
    if (next_slot_ >= SBX_STEER_MAX_BACKENDS) return std::nullopt;
    Slot& slot = slots_[paths[i]];
    slot.index = next_slot_++;
    slot.path = paths[i];
    return slot.index;
  };
  std::string error;
  std::optional<SteeringImage> image =
      BuildSteeringImage(*table, slot_of, config_.substitute, &error);
  std::vector<std::string> notes;
  if (!image) {
    // Nothing steered: an empty image passes every connection on.
    notes.push_back(StrCat("kernel dispatch steers nothing: ", error));
    image = SteeringImage{};
  }
  for (const auto& [path, why] : image->not_steered) {
    notes.push_back(StrCat("kernel dispatch leaves ", path, " to the engine: ", why));
  }
  if (absl::Status s = program_->Publish(*image); !s.ok()) return s;
  table_ = std::move(table);
  return notes;
}

void ListenerRegistry::Start() {
  thread_ = std::thread([this] { Run(); });
}

void ListenerRegistry::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  thread_.join();
}

void ListenerRegistry::Run() {
  std::vector<pollfd> fds;
  std::vector<Slot*> reclaiming;
  while (!stop_.load()) {
    fds.clear();
    reclaiming.clear();
    fds.push_back({wake_.get(), POLLIN, 0});
    fds.push_back({socket_.get(), POLLIN, 0});
    int timeout_ms = -1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const Clock::time_point now = Clock::now();
      for (auto& [path, slot] : slots_) {
        for (const UniqueFd& c : slot.channels) fds.push_back({c.get(), POLLIN, 0});
        if (slot.unattended_since && slot.in_map) {
          const auto due =
              *slot.unattended_since + std::chrono::milliseconds(config_.dispatch_timeout_ms);
          const auto left =
              std::chrono::duration_cast<std::chrono::milliseconds>(due - now).count() + 1;
          timeout_ms = timeout_ms < 0
                           ? static_cast<int>(std::max<int64_t>(left, 0))
                           : std::min(timeout_ms, static_cast<int>(std::max<int64_t>(left, 0)));
        }
      }
      // Listeners out of the map still take a connection the kernel had
      // already assigned: the engine serves those too.
      for (auto& [path, slot] : slots_) {
        if (slot.listener && !slot.in_map && slot.channels.empty()) {
          fds.push_back({slot.listener.get(), POLLIN, 0});
          reclaiming.push_back(&slot);
        }
      }
    }
    const int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) {
      Log(StrCat("kernel dispatch: poll: ", std::strerror(errno)));
      return;
    }
    if (stop_.load()) break;
    if (fds[0].revents != 0) {
      uint64_t drained;
      (void)!::read(wake_.get(), &drained, sizeof drained);
    }
    std::vector<int> hung_up;
    const size_t channels_end = fds.size() - reclaiming.size();
    for (size_t i = 2; i < channels_end; ++i) {
      if (fds[i].revents == 0) continue;
      // Receivers send nothing on the channel yet: anything read is
      // discarded, and EOF or an error means the receiver is gone.
      char sink[64];
      const ssize_t got = ::recv(fds[i].fd, sink, sizeof sink, MSG_DONTWAIT);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR) ||
          (fds[i].revents & (POLLHUP | POLLERR)) != 0) {
        hung_up.push_back(fds[i].fd);
      }
    }
    if (fds[1].revents != 0) ServeRequests();
    std::lock_guard<std::mutex> lock(mu_);
    if (!hung_up.empty()) WatchChannels(hung_up);
    for (size_t i = channels_end; i < fds.size(); ++i) {
      if (fds[i].revents != 0) Reclaim(reclaiming[i - channels_end]);
    }
    ExpireUnattended(Clock::now());
  }
}

void ListenerRegistry::ServeRequests() {
  for (int budget = 0; budget < 64; ++budget) {
    unsigned char data[kListenerMessageBytes + sizeof(sockaddr_un::sun_path) + 1];
    iovec iov{data, sizeof data};
    alignas(cmsghdr) unsigned char control[CMSG_SPACE(4 * sizeof(int))]{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(socket_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return;  // EAGAIN: all served
    std::vector<UniqueFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        fds.emplace_back(fd);
      }
    }
    // A request is the header and exactly two fds: the receiving socket
    // and the channel. Anything else is dropped (nobody to answer, or a
    // channel that is not a seqpacket socket).
    if (!IsListenerRequest(data, static_cast<size_t>(n)) || fds.size() != 2 ||
        (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0 ||
        !IsUnixSocketOfType(fds[1].get(), SOCK_SEQPACKET)) {
      ++refused_;
      continue;
    }
    const int channel = fds[1].get();
    if (!IsUnixSocketOfType(fds[0].get(), SOCK_DGRAM)) {
      ++refused_;
      Answer(channel, EPERM, -1);
      continue;
    }
    const std::string hint(reinterpret_cast<const char*>(data) + kListenerMessageBytes,
                           static_cast<size_t>(n) - kListenerMessageBytes);
    std::lock_guard<std::mutex> lock(mu_);
    bool throttled = false;
    Slot* slot = FindOwner(fds[0].get(), hint, &throttled);
    if (slot == nullptr) {
      ++refused_;
      Answer(channel, throttled ? EAGAIN : EPERM, -1);  // EAGAIN: ask again later
      continue;
    }
    if (absl::Status s = EnsureListener(slot); !s.ok()) {
      Log(StrCat("kernel dispatch: ", slot->path, ": ", s.message()));
      Answer(channel, EAGAIN, -1);
      continue;
    }
    if (!slot->in_map) {
      if (absl::Status s = program_->SetListener(slot->index, slot->listener.get()); !s.ok()) {
        Log(StrCat("kernel dispatch: ", slot->path, ": ", s.message()));
        Answer(channel, EOPNOTSUPP, -1);
        continue;
      }
      slot->in_map = true;
    }
    ++granted_;  // before the answer: a receiver that has it sees it counted
    Answer(channel, 0, slot->listener.get());
    // A backend that asks again and again must not fill the engine's fd
    // table: past the bound its oldest channel goes (the listener stays
    // attended as long as one is open).
    if (slot->channels.size() >= kMaxChannelsPerListener) {
      slot->channels.erase(slot->channels.begin());
    }
    slot->channels.push_back(std::move(fds[1]));
    slot->unattended_since.reset();
  }
}

void ListenerRegistry::Answer(int channel, uint32_t status, int listener_fd) {
  unsigned char answer[kListenerMessageBytes];
  EncodeListenerAnswer(status, answer);
  iovec iov{answer, sizeof answer};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int))]{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (listener_fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &listener_fd, sizeof listener_fd);
  }
  // A fresh seqpacket channel has room for one message: this never blocks.
  (void)::sendmsg(channel, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
}

ListenerRegistry::Slot* ListenerRegistry::FindOwner(int fd, const std::string& hint,
                                                    bool* throttled) {
  if (!table_) return nullptr;
  SysResult<ino_t> inode = SocketInode(fd);
  if (!inode.ok()) return nullptr;
  auto owns = [&](Slot& slot) { return BoundSocketInode(slot.path) == *inode; };
  // Only paths of the running configuration count (slots of paths a reload
  // removed keep their listeners, but are not handed out again).
  const std::vector<std::string>& paths = table_->unix_paths();
  if (auto it = slots_.find(hint); it != slots_.end() &&
                                   std::find(paths.begin(), paths.end(), hint) != paths.end() &&
                                   owns(it->second)) {
    return &it->second;
  }
  // The hint did not name the socket's path (a container sees it under
  // another name, or the request is not a backend's): every path is tried,
  // a connect and a sock_diag query each. Bounded so that a flood of such
  // requests cannot keep this thread busy: one full scan per interval.
  const Clock::time_point now = Clock::now();
  if (now < last_full_scan_ + kFullScanInterval) {
    *throttled = true;
    return nullptr;
  }
  last_full_scan_ = now;
  for (const std::string& path : paths) {
    auto it = slots_.find(path);
    if (it != slots_.end() && path != hint && owns(it->second)) return &it->second;
  }
  return nullptr;
}

absl::Status ListenerRegistry::EnsureListener(Slot* slot) {
  if (slot->listener) return absl::OkStatus();
  UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return absl::ErrnoToStatus(errno, "socket(AF_INET6, SOCK_STREAM)");
  const int off = 0;
  ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&any), sizeof any) != 0) {
    return absl::ErrnoToStatus(errno, "bind a steering listener to [::]:0");
  }
  socklen_t len = sizeof any;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&any), &len) != 0) {
    return absl::ErrnoToStatus(errno, "getsockname of a steering listener");
  }
  // Guarded before it listens: no connection can reach it directly.
  if (absl::Status s = program_->GuardPort(ntohs(any.sin6_port)); !s.ok()) return s;
  if (::listen(fd.get(), config_.backlog) != 0) {
    return absl::ErrnoToStatus(errno, "listen on a steering listener");
  }
  slot->listener = std::move(fd);
  return absl::OkStatus();
}

void ListenerRegistry::WatchChannels(const std::vector<int>& hung_up) {
  for (auto& [path, slot] : slots_) {
    const size_t before = slot.channels.size();
    std::erase_if(slot.channels, [&](const UniqueFd& c) {
      return std::find(hung_up.begin(), hung_up.end(), c.get()) != hung_up.end();
    });
    if (before > 0 && slot.channels.empty()) {
      slot.unattended_since = Clock::now();
      Log(StrCat("kernel dispatch: ", path,
                 ": its receiver is gone; the listener keeps its queue for ",
                 config_.dispatch_timeout_ms, " ms"));
    }
  }
}

void ListenerRegistry::ExpireUnattended(Clock::time_point now) {
  for (auto& [path, slot] : slots_) {
    if (!slot.unattended_since || !slot.in_map || !slot.channels.empty()) continue;
    if (now < *slot.unattended_since + std::chrono::milliseconds(config_.dispatch_timeout_ms)) {
      continue;
    }
    if (absl::Status s = program_->ClearListener(slot.index); !s.ok()) {
      Log(StrCat("kernel dispatch: ", path, ": ", s.message()));
      continue;
    }
    slot.in_map = false;
    Log(StrCat("kernel dispatch: ", path,
               ": no receiver came back; its connections go to the "
               "engine's listeners again"));
    Reclaim(&slot);
  }
}

void ListenerRegistry::Reclaim(Slot* slot) {
  SysResult<UnixAddress> dest = MakeUnixAddress(slot->path);
  UniqueFd sender(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  while (true) {
    UniqueFd conn(::accept4(slot->listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) return;  // EAGAIN: the queue is empty
    // The classic path: one fd per datagram to the backend's path.
    if (dest.ok() && sender && SendFd(sender.get(), conn.get(), MSG_DONTWAIT, &*dest).ok()) {
      ++reclaimed_;
    } else {
      ++reclaim_failed_;
    }
  }
}

KernelDispatchCounts ListenerRegistry::Counts() const {
  KernelDispatchCounts out;
  out.program = program_->Counters();
  out.granted = granted_.load();
  out.refused = refused_.load();
  out.reclaimed = reclaimed_.load();
  out.reclaim_failed = reclaim_failed_.load();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [path, slot] : slots_) {
    if (!slot.listener) continue;  // never asked for: nothing steered
    out.backends.push_back({path, program_->Steered(slot.index), !slot.channels.empty()});
  }
  return out;
}

}  // namespace sbx
