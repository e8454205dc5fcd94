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

#include "engine/core/control_data.h"
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
  // Mode 0666 from the start (umask 0), not chmod by path after the bind:
  // the path may be in a directory others can write.
  auto bind_any = [&] {
    const mode_t old = ::umask(0);
    const int rc = ::bind(fd.get(), address->sockaddr_ptr(), address->len);
    const int err = errno;
    ::umask(old);
    errno = err;
    return rc;
  };
  if (bind_any() != 0) {
    if (errno != EADDRINUSE)
      return absl::ErrnoToStatus(errno, StrCat("bind --listener-socket ", path));
    if (BoundSocketInode(path)) {
      return absl::AlreadyExistsError(StrCat("--listener-socket ", path,
                                             ": another daemon serves it (give each daemon its "
                                             "own --listener-socket)"));
    }
    ::unlink(path.c_str());  // stale: nobody is bound there any more
    if (bind_any() != 0) {
      return absl::ErrnoToStatus(errno, StrCat("bind --listener-socket ", path));
    }
  }
  // The sender's credentials on every request (SCM_CREDENTIALS).
  const int on = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
    return absl::ErrnoToStatus(errno, "SO_PASSCRED on --listener-socket");
  }
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
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      reclaimer_(std::chrono::milliseconds(config_.dispatch_timeout_ms)) {}

absl::StatusOr<std::unique_ptr<ListenerRegistry>> ListenerRegistry::Adopt(
    SteeringProgram* program, ListenerRegistryConfig config, AdoptedListeners adopted) {
  // Set by the predecessor on this same socket; again in case it was not.
  const int on = 1;
  ::setsockopt(adopted.socket.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
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
    slot.port = ntohs(bound.sin6_port);
    if (absl::Status s = program->GuardPort(slot.port); !s.ok()) return s;
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
  if (!handed_over_.load()) ::unlink(config_.socket_path.c_str());
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
  thread_ = std::thread([this] { Run(); });
}

absl::StatusOr<std::vector<std::string>> ListenerRegistry::Publish(
    std::shared_ptr<const RouteTable> table) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::vector<std::string>& paths = table->unix_paths();
  // Slots of paths the new table no longer names, and that no receiver
  // took, are free again; taken ones keep their listener (its receiver
  // still holds it) but nothing is steered to them. Reply channels stay
  // until they hang up (the registry's thread polls them unlocked).
  for (auto it = slots_.begin(); it != slots_.end();) {
    if (!it->second.listener && it->second.reply_channels.empty() &&
        std::find(paths.begin(), paths.end(), it->first) == paths.end()) {
      free_slots_.push_back(it->second.index);
      it = slots_.erase(it);
    } else {
      ++it;
    }
  }
  std::vector<std::string> notes;
  size_t out_of_slots = 0;
  auto slot_of = [&](uint32_t i) -> std::optional<uint32_t> {
    auto it = slots_.find(paths[i]);
    if (it != slots_.end()) return it->second.index;
    uint32_t index;
    if (!free_slots_.empty()) {
      index = free_slots_.back();
      free_slots_.pop_back();
    } else if (next_slot_ < SBX_STEER_MAX_BACKENDS) {
      index = next_slot_++;
    } else {
      ++out_of_slots;
      return std::nullopt;
    }
    Slot& slot = slots_[paths[i]];
    slot.index = index;
    slot.path = paths[i];
    return index;
  };
  std::string error;
  std::optional<SteeringImage> image =
      BuildSteeringImage(*table, slot_of, config_.substitute, &error);
  if (!image) {
    // Nothing steered: an empty image passes every connection on.
    notes.push_back(StrCat("kernel dispatch: steers nothing: ", error));
    image = SteeringImage{};
  }
  if (out_of_slots > 0) {
    notes.push_back(StrCat("kernel dispatch: leaves ", out_of_slots, " backend(s) to the engine: ",
                           "more than ", SBX_STEER_MAX_BACKENDS, " listeners"));
  }
  for (const auto& [path, why] : image->not_steered) {
    notes.push_back(StrCat("kernel dispatch: leaves ", path, " to the engine: ", why));
  }
  if (absl::Status s = program_->Publish(*image); !s.ok()) {
    // Half a generation written: the kernel must not keep deciding by the
    // old table while the engine decides by the new one.
    program_->Disable();
    return absl::Status(s.code(), StrCat(s.message(), "; kernel dispatch steers nothing now"));
  }
  table_ = std::move(table);
  return notes;
}

// The threads start here, not when the registry is made: it is made before
// daemon() forks, and a fork keeps only the forking thread.
void ListenerRegistry::Start() {
  closer_.Start();
  reclaimer_.Start();
  thread_ = std::thread([this] { Run(); });
}

void ListenerRegistry::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  thread_.join();
}

void ListenerRegistry::Drain() {
  if (handed_over_.load()) return;  // the successor serves them
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [path, slot] : slots_) {
      if (!slot.listener) continue;
      if (slot.in_map && program_->ClearListener(slot.index).ok()) slot.in_map = false;
      if (slot.channels.empty() && !slot.in_map) TakeBack(&slot);
    }
  }
  reclaimer_.Stop();  // each job within --dispatch-timeout
}

int ListenerRegistry::PollTimeoutLocked(Clock::time_point now) const {
  int timeout_ms = -1;
  for (const auto& [path, slot] : slots_) {
    if (!slot.unattended_since || !slot.in_map) continue;
    const auto due =
        *slot.unattended_since + std::chrono::milliseconds(config_.dispatch_timeout_ms);
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(due - now).count() + 1;
    const int ms = static_cast<int>(std::max<int64_t>(left, 0));
    timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms);
  }
  return timeout_ms;
}

// The registry's thread: one poll over the wake-up eventfd, the listener
// socket and every receiver's channel, and the unattended listeners' clocks.
void ListenerRegistry::Run() {
  std::vector<pollfd> fds;
  std::vector<std::string> paths;  // of fds[2...]: the backend each channel was granted for
  while (!stop_.load()) {
    fds.clear();
    paths.clear();
    fds.push_back({wake_.get(), POLLIN, 0});
    // Requests wait in the socket while hostile fds are still being closed.
    fds.push_back({socket_.get(), static_cast<short>(closer_.pending() < 256 ? POLLIN : 0), 0});
    // Relayed replies wait in their channels while the workers' queues are
    // full (a hang-up is still seen: poll reports it unasked).
    const bool room = relay_ == nullptr || relay_->HasRoom(kRepliesPerChannelTurn);
    const short channel_events = room ? POLLIN : 0;
    int timeout_ms;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [path, slot] : slots_) {
        for (const auto* list : {&slot.channels, &slot.reply_channels}) {
          for (const UniqueFd& c : *list) {
            fds.push_back({c.get(), channel_events, 0});
            paths.push_back(path);
          }
        }
      }
      timeout_ms = PollTimeoutLocked(Clock::now());
    }
    if (closer_.pending() >= 256 || !room) {
      timeout_ms = timeout_ms < 0 ? 10 : std::min(timeout_ms, 10);
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
      Log(StrCat("kernel dispatch: poll: ", std::strerror(errno), "; no more listener requests"));
      return;
    }
    if (stop_.load()) break;
    if (fds[0].revents != 0) {
      uint64_t drained;
      (void)!::read(wake_.get(), &drained, sizeof drained);
    }
    ReadChannels(fds, paths);
    if (fds[1].revents != 0) ServeRequests();
    std::lock_guard<std::mutex> lock(mu_);
    ExpireUnattended(Clock::now());
  }
}

// Each ready channel: up to kRepliesPerChannelTurn relayed replies (anything
// else is dropped), and EOF or an error means the receiver is gone. Only
// this thread changes the slots' channels, so the fds stay valid unlocked.
void ListenerRegistry::ReadChannels(const std::vector<pollfd>& fds,
                                    const std::vector<std::string>& paths) {
  std::vector<int> hung_up;
  for (size_t i = 2; i < fds.size(); ++i) {
    const short revents = fds[i].revents;
    if (revents == 0) continue;
    // A receiver that answered and then exited left its last answers in
    // the channel: they are read before its hang-up counts (an ack lost
    // here would have what it confirmed sent again). While the workers'
    // queues are full (channels polled without POLLIN), a hang-up counts
    // at once: poll would report it again and again.
    const bool room = relay_ == nullptr || relay_->HasRoom(kRepliesPerChannelTurn);
    bool gone = (revents & POLLERR) != 0 || (revents & (POLLHUP | POLLIN)) == POLLHUP ||
                (!room && (revents & POLLHUP) != 0);
    if (!gone && !room) continue;  // read when the workers have taken theirs
    for (size_t turn = 0; !gone && turn < kRepliesPerChannelTurn; ++turn) {
      unsigned char data[kRelayedReplyMaxBytes + 1];
      const ssize_t got = ::recv(fds[i].fd, data, sizeof data, MSG_DONTWAIT);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (got <= 0) {
        gone = true;
        break;
      }
      ReceiverMessage reply;
      std::string_view sender;
      if (relay_ != nullptr &&
          DecodeRelayedReply(data, static_cast<size_t>(got), &reply, &sender)) {
        (void)relay_->Deliver(paths[i - 2], sender, data);
      }
    }
    if (gone) hung_up.push_back(fds[i].fd);
  }
  if (hung_up.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  DropChannels(hung_up);
}

void ListenerRegistry::ServeRequests() {
  for (int budget = 0; budget < 64 && closer_.pending() < 256; ++budget) {
    std::optional<Request> request = ReadRequest();
    if (!request) return;
    if (request->receiving) Grant(std::move(*request));
  }
}

// One datagram off the socket: nullopt when none is left; a Request
// without a receiving socket when the datagram was not one (counted,
// answered where there is a channel to answer on).
std::optional<ListenerRegistry::Request> ListenerRegistry::ReadRequest() {
  unsigned char data[kListenerMessageBytes + sizeof(sockaddr_un::sun_path) + 1];
  iovec iov{data, sizeof data};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(4 * sizeof(int)) + CMSG_SPACE(sizeof(ucred))]{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(socket_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) return std::nullopt;  // EAGAIN: all served
  std::vector<UniqueFd> fds;
  std::optional<ucred> sender;
  ForEachReceivedFd(&msg, [&](int fd) { fds.emplace_back(fd); });
  for (cmsghdr* c = FirstCmsg(&msg); c != nullptr; c = NextCmsg(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
        CmsgPayloadBytes(&msg, c) >= sizeof(ucred)) {
      std::memcpy(&sender.emplace(), CMSG_DATA(c), sizeof(ucred));
    }
  }
  Request request;
  // A request is the header, the sender's credentials and exactly two fds:
  // the receiving socket and the channel. The type checks ask getsockopt,
  // which fails at once on anything but a socket (no FUSE call); only
  // checked Unix sockets are closed on this thread.
  uint32_t flags = 0;
  const bool well_formed = IsListenerRequest(data, static_cast<size_t>(n), &flags) &&
                           fds.size() == 2 && sender.has_value() &&
                           (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) == 0 &&
                           IsUnixSocketOfType(fds[1].get(), SOCK_SEQPACKET);
  if (!well_formed) {
    ++refused_;
    for (UniqueFd& fd : fds) closer_.Close(std::move(fd));
    return request;  // nobody to answer
  }
  if (!IsUnixSocketOfType(fds[0].get(), SOCK_DGRAM)) {
    ++refused_;
    Answer(fds[1].get(), EPERM, -1);
    closer_.Close(std::move(fds[0]));
    return request;
  }
  request.receiving = std::move(fds[0]);
  request.channel = std::move(fds[1]);
  request.hint.assign(reinterpret_cast<const char*>(data) + kListenerMessageBytes,
                      static_cast<size_t>(n) - kListenerMessageBytes);
  request.uid = sender->uid;
  request.flags = flags;
  return request;
}

// Root or the owner of the socket file at `path`.
static bool MayTake(uid_t uid, const std::string& path) {
  if (uid == 0) return true;
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_uid == uid;
}

void ListenerRegistry::Grant(Request request) {
  const int channel = request.channel.get();
  std::lock_guard<std::mutex> lock(mu_);
  bool throttled = false;
  Slot* slot = FindOwner(request.receiving.get(), request.hint, &throttled);
  if (slot == nullptr || !MayTake(request.uid, slot->path)) {
    ++refused_;
    Answer(channel, throttled ? EAGAIN : EPERM, -1);  // EAGAIN: ask again later
    return;
  }
  if ((request.flags & kRequestReplyChannelOnly) != 0) {
    ++reply_channels_granted_;
    Answer(channel, 0, -1);
    if (slot->reply_channels.size() >= kMaxChannelsPerListener) {
      slot->reply_channels.erase(slot->reply_channels.begin());
    }
    slot->reply_channels.push_back(std::move(request.channel));
    return;
  }
  if (absl::Status s = EnsureListener(slot); !s.ok()) {
    Log(StrCat("kernel dispatch: ", slot->path, ": ", s.message()));
    Answer(channel, EAGAIN, -1);
    return;
  }
  if (!slot->in_map) {
    if (absl::Status s = program_->SetListener(slot->index, slot->listener.get()); !s.ok()) {
      Log(StrCat("kernel dispatch: ", slot->path, ": ", s.message()));
      Answer(channel, EAGAIN, -1);
      return;
    }
    slot->in_map = true;
  }
  if (slot->reclaim_cancelled) slot->reclaim_cancelled->store(true);  // the queue is theirs again
  ++granted_;  // before the answer: a receiver that has it sees it counted
  Answer(channel, 0, slot->listener.get());
  // A backend that asks again and again must not fill the engine's fd
  // table: past the bound its oldest channel goes (the listener stays
  // attended as long as one is open).
  if (slot->channels.size() >= kMaxChannelsPerListener) {
    slot->channels.erase(slot->channels.begin());
  }
  slot->channels.push_back(std::move(request.channel));
  slot->unattended_since.reset();
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
  // Never blocks: a channel the requester filled loses its answer, and the
  // requester times out.
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
  if (slot->listener) {
    // A receiver holds the same socket: it may have shut it down (a common
    // way to wake an accepting thread) or listened again on another port.
    int listening = 0;
    socklen_t len = sizeof listening;
    sockaddr_in6 bound{};
    socklen_t bound_len = sizeof bound;
    if (::getsockopt(slot->listener.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 &&
        listening != 0 &&
        ::getsockname(slot->listener.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len) == 0 &&
        ntohs(bound.sin6_port) == slot->port) {
      return absl::OkStatus();
    }
    Log(StrCat("kernel dispatch: ", slot->path,
               ": its listener no longer listens on its port; replacing it"));
    if (slot->in_map) (void)program_->ClearListener(slot->index);
    slot->in_map = false;
    closer_.Close(std::move(slot->listener));
  }
  UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return absl::ErrnoToStatus(errno, "socket(AF_INET6, SOCK_STREAM)");
  const int off = 0, on = 1;
  ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  // Accepted connections inherit it: one the backend closes first sits in
  // TIME_WAIT on the port the client connected to, and without it the
  // engine could not bind that port again for a minute after a restart.
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
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
  slot->port = ntohs(any.sin6_port);
  return absl::OkStatus();
}

void ListenerRegistry::DropChannels(const std::vector<int>& hung_up) {
  for (auto& [path, slot] : slots_) {
    auto gone = [&](const UniqueFd& c) {
      return std::find(hung_up.begin(), hung_up.end(), c.get()) != hung_up.end();
    };
    std::erase_if(slot.reply_channels, gone);
    const size_t before = slot.channels.size();
    std::erase_if(slot.channels, gone);
    if (before > 0 && slot.channels.empty()) {
      slot.unattended_since = Clock::now();
      Log(StrCat("kernel dispatch: ", path, ": its receiver is gone; the listener keeps its queue ",
                 "for ", config_.dispatch_timeout_ms, " ms"));
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
    Log(StrCat("kernel dispatch: ", path, ": no receiver came back; its connections go to the ",
               "engine's listeners again"));
    TakeBack(&slot);
  }
}

void ListenerRegistry::TakeBack(Slot* slot) {
  UniqueFd dup(::fcntl(slot->listener.get(), F_DUPFD_CLOEXEC, 0));
  if (!dup) {
    Log(StrCat("kernel dispatch: ", slot->path, ": dup: ", std::strerror(errno),
               "; what its listener holds stays there"));
    return;
  }
  slot->reclaim_cancelled = std::make_shared<std::atomic<bool>>(false);
  reclaimer_.Reclaim(slot->path, std::move(dup), slot->reclaim_cancelled);
}

KernelDispatchCounts ListenerRegistry::Counts() const {
  KernelDispatchCounts out;
  out.program = program_->Counters();
  out.granted = granted_.load();
  out.refused = refused_.load();
  out.reclaimed = reclaimer_.reclaimed();
  out.reclaim_failed = reclaimer_.failed();
  out.reply_channels = reply_channels_granted_.load();
  if (relay_ != nullptr) {
    out.relayed = relay_->relayed();
    out.relay_unknown = relay_->unknown();
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [path, slot] : slots_) {
    if (!slot.listener) continue;  // never asked for: nothing steered
    out.backends.push_back({path, program_->Steered(slot.index), !slot.channels.empty()});
  }
  return out;
}

}  // namespace sbx
