#include "engine/daemon/handover.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "absl/status/status.h"
#include "engine/core/numbers.h"
#include "engine/core/str_cat.h"

namespace sbx {
namespace {

constexpr size_t kMaxFdsPerHandoverMessage = 250;  // the kernel's SCM_MAX_FD is 253
constexpr size_t kMaxMessage = 64 * 1024;
constexpr int kRequestTimeoutS = 10;      // each step of the exchange
constexpr int kReadyTimeoutMs = 120'000;  // a successor's start-up
constexpr int kStoppedTimeoutS = 60;      // the old daemon's drain

void Log(const std::string& line) {
  std::fprintf(stderr, "socketbox: handover: %s\n", line.c_str());
}

absl::Status Errno(int err, std::string_view what, const std::string& path) {
  return absl::ErrnoToStatus(err, StrCat("--handover ", path, ": ", what));
}

absl::StatusOr<sockaddr_un> UnixAddressOf(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(StrCat("--handover '", path, "': a socket path of 1 to ",
                                             sizeof(addr.sun_path) - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

void SetTimeouts(int fd, int seconds) {
  const timeval tv{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

std::optional<ucred> PeerOf(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return std::nullopt;
  return cred;
}

// 0 or an errno value.
int SendMessage(int fd, std::string_view data, const int* fds, size_t count) {
  msghdr msg{};
  iovec iov{const_cast<char*>(data.data()), data.size()};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerHandoverMessage)]{};
  if (count > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * count);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
  }
  while (true) {
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

// 0 or an errno value (ENOLINK: the peer closed; EMSGSIZE: truncated).
int ReceiveMessage(int fd, std::string* data, std::vector<UniqueFd>* fds) {
  data->assign(kMaxMessage, '\0');
  msghdr msg{};
  iovec iov{data->data(), data->size()};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerHandoverMessage)]{};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int received;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds->emplace_back(received);
    }
  }
  if (n == 0) return ENOLINK;
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) return EMSGSIZE;
  data->resize(static_cast<size_t>(n));
  return 0;
}

std::vector<std::string> SplitNul(std::string_view text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t nul = text.find('\0', start);
    parts.emplace_back(
        text.substr(start, nul == std::string_view::npos ? std::string_view::npos : nul - start));
    if (nul == std::string_view::npos) break;
    start = nul + 1;
  }
  return parts;
}

// /proc/self/cmdline: the daemon's own command line, for its successor.
std::vector<std::string> OwnCommandLine() {
  std::vector<std::string> argv;
  UniqueFd fd(::open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC));
  if (!fd) return argv;
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
  if (!text.empty() && text.back() == '\0') text.pop_back();
  if (!text.empty()) argv = SplitNul(text);
  return argv;
}

// Kernel dispatch's part of an offer: the listener socket, then each
// backend's listener with the channels of its receivers.
absl::Status ReceiveKernelListeners(int fd, unsigned count, HandoverReceived* got,
                                    const std::string& from, const std::string& path) {
  std::string data;
  std::vector<UniqueFd> fds;
  if (int err = ReceiveMessage(fd, &data, &fds); err != 0) {
    return Errno(err, StrCat("receive the kernel dispatch socket", from), path);
  }
  if (data != "KERNEL" || fds.size() != 1) {
    return absl::DataLossError(StrCat("--handover ", path, ": malformed kernel message", from));
  }
  AdoptedListeners& kernel = got->kernel.emplace();
  kernel.socket = std::move(fds[0]);
  for (unsigned i = 0; i < count; ++i) {
    fds.clear();
    if (int err = ReceiveMessage(fd, &data, &fds); err != 0) {
      return Errno(err, StrCat("receive a kernel dispatch listener", from), path);
    }
    constexpr std::string_view kTag = "KLISTENER ";
    if (data.rfind(kTag, 0) != 0 || data.size() == kTag.size() || fds.empty()) {
      return absl::DataLossError(
          StrCat("--handover ", path, ": malformed kernel listener message", from));
    }
    AdoptedListeners::Listener& l = kernel.listeners.emplace_back();
    l.path = data.substr(kTag.size());
    l.listener = std::move(fds[0]);
    for (size_t c = 1; c < fds.size(); ++c) l.channels.push_back(std::move(fds[c]));
  }
  return absl::OkStatus();
}

// Sends kernel dispatch's part of an offer (see ReceiveKernelListeners).
int SendKernelListeners(int conn, const ListenerHandover& kernel) {
  int err = SendMessage(conn, "KERNEL", &kernel.socket, 1);
  for (size_t i = 0; err == 0 && i < kernel.listeners.size(); ++i) {
    const ListenerHandover::Listener& l = kernel.listeners[i];
    std::vector<int> fds = {l.listener};
    // More receivers than one message carries lose their channel: the
    // successor then sees fewer holders, never a wrong one.
    for (size_t c = 0; c < l.channels.size() && fds.size() < kMaxFdsPerHandoverMessage; ++c) {
      fds.push_back(l.channels[c]);
    }
    err = SendMessage(conn, StrCat("KLISTENER ", l.path), fds.data(), fds.size());
  }
  return err;
}

}  // namespace

std::string CurrentDirectory() {
  char buf[4096];
  return ::getcwd(buf, sizeof(buf)) != nullptr ? buf : "/";
}

absl::StatusOr<std::optional<HandoverReceived>> RequestHandover(const std::string& path) {
  auto addr = UnixAddressOf(path);
  if (!addr.ok()) return addr.status();
  HandoverReceived got;
  got.channel.Reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!got.channel) return Errno(errno, "socket", path);
  const int fd = got.channel.get();
  if (::connect(fd, reinterpret_cast<sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    // Nobody there (first start, or the last daemon is gone): bind as usual.
    if (errno == ENOENT || errno == ECONNREFUSED) return std::nullopt;
    return Errno(errno, "connect", path);
  }
  SetTimeouts(fd, kRequestTimeoutS);
  const auto peer = PeerOf(fd);
  if (!peer || (peer->uid != 0 && peer->uid != ::getuid())) {
    return absl::PermissionDeniedError(
        StrCat("--handover ", path, ": served by uid ", peer ? peer->uid : -1u,
               ", neither root nor this user: not taking its sockets"));
  }
  got.old_pid = peer->pid;
  const std::string from = StrCat(" from pid ", got.old_pid, " at ", path);
  if (int err = SendMessage(fd, "REQUEST", nullptr, 0); err != 0)
    return Errno(err, "send request", path);

  std::string data;
  std::vector<UniqueFd> fds;
  if (int err = ReceiveMessage(fd, &data, &fds); err != 0)
    return Errno(err, "receive offer" + from, path);
  std::vector<std::string> parts = SplitNul(data);
  // "OFFER L M": L listeners to follow, M = 1 if a metrics socket is attached.
  unsigned listeners = 0, metrics = 0, kernel = 0;
  if (parts.size() < 3 ||
      std::sscanf(parts[0].c_str(), "OFFER %u %u %u", &listeners, &metrics, &kernel) < 2 ||
      metrics > 1 || fds.size() != 1 + metrics || listeners == 0 || listeners > 65536 ||
      kernel > SBX_STEER_MAX_BACKENDS + 1) {
    return absl::DataLossError(StrCat("--handover ", path, ": malformed offer", from));
  }
  got.log = std::move(fds[0]);
  if (metrics == 1) got.metrics = std::move(fds[1]);
  got.cwd = parts[1];
  got.argv.assign(parts.begin() + 2, parts.end());
  while (got.listeners.size() < listeners) {
    fds.clear();
    if (int err = ReceiveMessage(fd, &data, &fds); err != 0) {
      return Errno(err, StrCat("receive listeners", from), path);
    }
    unsigned count = 0;
    if (std::sscanf(data.c_str(), "FDS %u", &count) != 1 || count != fds.size() || count == 0 ||
        got.listeners.size() + count > listeners) {
      return absl::DataLossError(StrCat("--handover ", path, ": malformed listener message", from));
    }
    for (UniqueFd& l : fds) {
      int type = 0, listening = 0;
      socklen_t len = sizeof(type);
      ::getsockopt(l.get(), SOL_SOCKET, SO_TYPE, &type, &len);
      len = sizeof(listening);
      ::getsockopt(l.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
      if (type != SOCK_STREAM || !listening) {
        return absl::DataLossError(
            StrCat("--handover ", path, ": passed fd is not a listening stream socket", from));
      }
      got.listeners.push_back(std::move(l));
    }
  }
  if (kernel > 0) {
    if (absl::Status s = ReceiveKernelListeners(fd, kernel - 1, &got, from, path); !s.ok())
      return s;
  }
  return std::optional<HandoverReceived>(std::move(got));
}

absl::Status CompleteHandover(HandoverReceived* received) {
  const int fd = received->channel.get();
  const std::string from = StrCat("pid ", received->old_pid);
  // With its pid: SO_PEERCRED names the process that connected, which -d
  // (or --upgrade) has left since.
  if (int err = SendMessage(fd, StrCat("READY ", ::getpid()), nullptr, 0); err != 0) {
    return absl::ErrnoToStatus(err, StrCat("handover: tell ", from, " to stop"));
  }
  // The old daemon's workers stop (their drain: bounded by its
  // --dispatch-timeout); connections wait in the listeners' backlogs.
  SetTimeouts(fd, kStoppedTimeoutS);
  std::string data;
  std::vector<UniqueFd> fds;
  if (int err = ReceiveMessage(fd, &data, &fds); err != 0 || data != "STOPPED") {
    return absl::ErrnoToStatus(
        err != 0 ? err : EPROTO,
        StrCat("handover: ", from, " did not confirm that it stopped accepting"));
  }
  received->channel.Reset();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<HandoverServer>> HandoverServer::Open(const std::string& path) {
  auto addr = UnixAddressOf(path);
  if (!addr.ok()) return addr.status();
  // Bound under a temporary name and renamed into place: PATH always names
  // a live daemon (the old one until this rename, this one after).
  const std::string temporary = StrCat(path, ".", ::getpid());
  auto temp_addr = UnixAddressOf(temporary);
  if (!temp_addr.ok()) return temp_addr.status();
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return Errno(errno, "socket", path);
  ::unlink(temporary.c_str());
  // Whoever connects receives the listening sockets: owner only.
  const mode_t old_umask = ::umask(0177);
  const int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&*temp_addr), sizeof(*temp_addr));
  const int bind_errno = errno;
  ::umask(old_umask);
  if (rc != 0) return Errno(bind_errno, StrCat("bind ", temporary), path);
  if (::listen(fd.get(), 4) != 0 || ::rename(temporary.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temporary.c_str());
    return Errno(err, "listen/rename into place", path);
  }
  struct stat st {};
  ::stat(path.c_str(), &st);
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return Errno(errno, "eventfd", path);
  return std::unique_ptr<HandoverServer>(
      new HandoverServer(path, std::move(fd), std::move(wake), st.st_ino));
}

HandoverServer::HandoverServer(std::string path, UniqueFd listener, UniqueFd wake, ino_t inode)
    : path_(std::move(path)),
      listener_(std::move(listener)),
      wake_(std::move(wake)),
      inode_(inode),
      trusted_uid_(::getuid()) {}

HandoverServer::~HandoverServer() {
  Stop();
  // Removed only while it is still this daemon's (a successor renamed its
  // own over it otherwise); after a privilege drop this may fail, and a
  // stale socket is harmless: a successor finds nobody there and binds.
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0 && st.st_ino == inode_) ::unlink(path_.c_str());
}

void HandoverServer::Start(HandoverOffer offer, std::function<void(pid_t)> handed_over) {
  offer_ = std::move(offer);
  if (offer_.argv.empty()) offer_.argv = OwnCommandLine();
  handed_over_ = std::move(handed_over);
  thread_ = std::thread([this] { Serve(); });
}

void HandoverServer::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
  thread_.join();
}

void HandoverServer::Finish() {
  Stop();
  if (!successor_) return;
  (void)SendMessage(successor_.get(), "STOPPED", nullptr, 0);
  successor_.Reset();
}

void HandoverServer::Serve() {
  while (listener_) {
    pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) continue;
    const auto peer = PeerOf(conn.get());
    if (!peer || (peer->uid != 0 && peer->uid != trusted_uid_)) {
      Log(StrCat("refused a successor with uid ", peer ? peer->uid : -1u, " (only root or uid ",
                 trusted_uid_, " may take the listeners)"));
      continue;
    }
    if (Serve(conn.get())) {
      successor_ = std::move(conn);
      handed_over_(peer->pid);
      return;
    }
  }
}

bool HandoverServer::Serve(int conn) {
  const auto peer = PeerOf(conn);
  const std::string who = StrCat("successor pid ", peer ? peer->pid : 0);
  SetTimeouts(conn, kRequestTimeoutS);
  std::string data;
  std::vector<UniqueFd> ignored;
  if (int err = ReceiveMessage(conn, &data, &ignored); err != 0 || data != "REQUEST") {
    Log(StrCat(who, ": no valid request (", err != 0 ? std::strerror(err) : "unknown message",
               ")"));
    return false;
  }
  // Kernel dispatch's registry stops serving while the successor sets up
  // (requests wait in its socket), so that what is offered stays whole.
  std::optional<ListenerHandover> kernel;
  if (offer_.kernel != nullptr) kernel = offer_.kernel->Export();
  std::string offer =
      StrCat("OFFER ", offer_.listener_fds.size(), " ", offer_.metrics_fd >= 0 ? 1 : 0);
  if (kernel) offer += StrCat(" ", kernel->listeners.size() + 1);
  offer.push_back('\0');
  offer += offer_.cwd;
  for (const std::string& arg : offer_.argv) {
    offer.push_back('\0');
    offer += arg;
  }
  std::vector<int> attached = {STDERR_FILENO};
  if (offer_.metrics_fd >= 0) attached.push_back(offer_.metrics_fd);
  int err = SendMessage(conn, offer, attached.data(), attached.size());
  for (size_t sent = 0; err == 0 && sent < offer_.listener_fds.size();
       sent += kMaxFdsPerHandoverMessage) {
    const size_t count = std::min(kMaxFdsPerHandoverMessage, offer_.listener_fds.size() - sent);
    err = SendMessage(conn, StrCat("FDS ", count), offer_.listener_fds.data() + sent, count);
  }
  if (err == 0 && kernel) err = SendKernelListeners(conn, *kernel);
  if (err != 0) {
    Log(StrCat(who, ": sending the listeners failed: ", std::strerror(err), "; still serving"));
    if (offer_.kernel != nullptr) offer_.kernel->Resume();
    return false;
  }
  Log(StrCat(offer_.listener_fds.size(), " listener(s) sent to ", who,
             "; waiting for it to start"));
  // The successor's start-up: this daemon keeps accepting meanwhile.
  pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {conn, POLLIN, 0}};
  int ready;
  do {
    ready = ::poll(fds, 2, kReadyTimeoutMs);
  } while (ready < 0 && errno == EINTR);
  if (ready > 0 && fds[0].revents != 0) {  // this daemon is stopping anyway
    if (offer_.kernel != nullptr) offer_.kernel->Resume();
    return false;
  }
  err = ready > 0 ? ReceiveMessage(conn, &data, &ignored) : ETIMEDOUT;
  int pid = 0;
  if (err != 0 || std::sscanf(data.c_str(), "READY %d", &pid) != 1) {
    Log(StrCat(who, " did not take over (", err != 0 ? std::strerror(err) : "unknown message",
               "); still serving"));
    if (offer_.kernel != nullptr) offer_.kernel->Resume();
    return false;
  }
  if (offer_.kernel != nullptr) offer_.kernel->HandedOver();
  listener_.Reset();  // one successor only
  Log(StrCat("successor pid ", pid,
             " takes over: no longer accepting; serving what was accepted, then exiting"));
  return true;
}

}  // namespace sbx
