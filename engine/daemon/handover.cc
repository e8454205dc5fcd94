#include "engine/daemon/handover.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "engine/core/diagnostic.h"
#include "engine/core/numbers.h"
#include "engine/core/str_cat.h"
#include "engine/sys/open_fds.h"

namespace sbx {
namespace {

constexpr size_t kMaxFdsPerHandoverMessage = 250;  // the kernel's SCM_MAX_FD is 253
constexpr size_t kMaxMessage = 64 * 1024;
constexpr int kStoppedTimeoutS = 60;  // the old daemon's drain
// A requester told BUSY asks again this often, for kHandoverStepTimeoutS.
constexpr auto kBusyRetry = std::chrono::milliseconds(200);

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

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
// `sender`, if given, gets the sender's credentials when the kernel
// attached them (SO_PASSCRED on `fd`), else pid 0.
int ReceiveMessage(int fd, std::string* data, std::vector<UniqueFd>* fds, ucred* sender = nullptr) {
  data->assign(kMaxMessage, '\0');
  if (sender != nullptr) *sender = ucred{};
  msghdr msg{};
  iovec iov{data->data(), data->size()};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) unsigned char
      control[CMSG_SPACE(sizeof(int) * kMaxFdsPerHandoverMessage) + CMSG_SPACE(sizeof(ucred))]{};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS && sender != nullptr &&
        c->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
      std::memcpy(sender, CMSG_DATA(c), sizeof(ucred));
    }
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

// /proc/PID/cmdline, its arguments joined by spaces (the first 512 bytes);
// "" when it cannot be read (the process is gone, or /proc hides it).
std::string CommandLineOf(pid_t pid) {
  UniqueFd fd(::open(StrCat("/proc/", pid, "/cmdline").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "";
  char buf[512];
  const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
  if (n <= 0) return "";
  std::string text(buf, static_cast<size_t>(n));
  while (!text.empty() && text.back() == '\0') text.pop_back();
  std::replace(text.begin(), text.end(), '\0', ' ');
  return text;  // made printable where it is shown (RequestHandover)
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

namespace {

// Another successor holds the offer (a "BUSY" answer).
struct Busy {
  pid_t daemon_pid = 0;  // the daemon that answered
  pid_t pid = 0;         // the successor that holds its offer
  unsigned seconds = 0, limit = 0;
  std::string command;
};

// The named fds' part of an offer: "NAMED N1 N2 ..." with the fds.
absl::Status ReceiveNamedFds(int fd, unsigned count, HandoverReceived* got, const std::string& from,
                             const std::string& path) {
  while (got->named.size() < count) {
    std::string data;
    std::vector<UniqueFd> fds;
    if (int err = ReceiveMessage(fd, &data, &fds); err != 0) {
      return Errno(err, StrCat("receive the named fds", from), path);
    }
    constexpr std::string_view kTag = "NAMED";
    std::vector<int> numbers;
    bool valid = data.rfind(kTag, 0) == 0;
    for (size_t at = kTag.size(); valid && at < data.size();) {
      if (data[at++] != ' ') valid = false;
      const size_t end = std::min(data.find(' ', at), data.size());
      auto n = ParseDecimal(data.substr(at, end - at), 3, INT32_MAX);
      if (!n) valid = false;
      if (valid) numbers.push_back(static_cast<int>(*n));
      at = end;
    }
    if (!valid || numbers.empty() || numbers.size() != fds.size() ||
        got->named.size() + numbers.size() > count) {
      return absl::DataLossError(StrCat("--handover ", path, ": malformed named fd message", from));
    }
    for (size_t i = 0; i < numbers.size(); ++i)
      got->named.emplace_back(numbers[i], std::move(fds[i]));
  }
  return absl::OkStatus();
}

// One request. Sets `busy` (and returns nullopt) when another successor
// holds the offer.
absl::StatusOr<std::optional<HandoverReceived>> RequestOnce(const std::string& path,
                                                            const sockaddr_un& addr,
                                                            std::optional<Busy>* busy) {
  busy->reset();
  HandoverReceived got;
  got.channel.Reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!got.channel) return Errno(errno, "socket", path);
  const int fd = got.channel.get();
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    // Nobody there (first start, or the last daemon is gone): bind as usual.
    if (errno == ENOENT || errno == ECONNREFUSED) return std::nullopt;
    return Errno(errno, "connect", path);
  }
  SetTimeouts(fd, kHandoverStepTimeoutS);
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
  if (int err = ReceiveMessage(fd, &data, &fds); err != 0) {
    // A daemon of an earlier version does not say BUSY: it answers the
    // next successor only when the one it serves is done.
    return Errno(err,
                 StrCat("receive offer", from,
                        err == EAGAIN ? StrCat(" (no answer in ", kHandoverStepTimeoutS,
                                               " s: another successor may hold the offer)")
                                      : ""),
                 path);
  }
  std::vector<std::string> parts = SplitNul(data);
  if (data.rfind("BUSY ", 0) == 0) {
    Busy& b = busy->emplace();
    int pid = 0;
    if (std::sscanf(parts[0].c_str(), "BUSY %d %u %u", &pid, &b.seconds, &b.limit) != 3) {
      return absl::DataLossError(StrCat("--handover ", path, ": malformed busy answer", from));
    }
    b.pid = pid;
    b.daemon_pid = got.old_pid;
    if (parts.size() > 1) b.command = Printable(parts[1]);
    return std::nullopt;
  }
  // "OFFER L M K J": L listeners to follow, M = 1 if a metrics socket is
  // attached, K kernel dispatch messages, J named fds (K and J optional).
  unsigned listeners = 0, metrics = 0, kernel = 0, named = 0;
  if (parts.size() < 3 ||
      std::sscanf(parts[0].c_str(), "OFFER %u %u %u %u", &listeners, &metrics, &kernel, &named) <
          2 ||
      metrics > 1 || fds.size() != 1 + metrics || listeners == 0 || listeners > 65536 ||
      kernel > SBX_STEER_MAX_BACKENDS + 1 || named > 65536) {
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
  if (named > 0) {
    if (absl::Status s = ReceiveNamedFds(fd, named, &got, from, path); !s.ok()) return s;
  }
  return std::optional<HandoverReceived>(std::move(got));
}

}  // namespace

absl::StatusOr<std::optional<HandoverReceived>> RequestHandover(const std::string& path) {
  auto addr = UnixAddressOf(path);
  if (!addr.ok()) return addr.status();
  // While another successor holds the offer, ask again for a while: it may
  // be done (or give up) soon. Then say who holds it.
  const int64_t deadline = NowMs() + kHandoverStepTimeoutS * 1000;
  while (true) {
    std::optional<Busy> busy;
    auto got = RequestOnce(path, *addr, &busy);
    if (!busy) return got;
    if (NowMs() >= deadline) {
      return absl::UnavailableError(StrCat(
          "--handover ", path, ": pid ", busy->pid,
          busy->command.empty() ? std::string(" (command line not readable)")
                                : StrCat(" (", busy->command, ")"),
          " holds the offer of pid ", busy->daemon_pid, "'s listeners and has not taken over in ",
          busy->seconds, " s (a successor gets up to ", busy->limit,
          " s); it hands over to one successor at a time: try again once that one is done, or "
          "end it"));
    }
    std::this_thread::sleep_for(kBusyRetry);
  }
}

std::vector<int> HandoverFds(const HandoverReceived& r) {
  std::vector<int> fds;
  auto add = [&fds](const UniqueFd& fd) {
    if (fd) fds.push_back(fd.get());
  };
  add(r.channel);
  for (const UniqueFd& l : r.listeners) add(l);
  add(r.metrics);
  add(r.log);
  if (r.kernel) {
    add(r.kernel->socket);
    for (const AdoptedListeners::Listener& l : r.kernel->listeners) {
      add(l.listener);
      for (const UniqueFd& c : l.channels) add(c);
    }
  }
  for (const auto& [number, fd] : r.named) add(fd);
  return fds;
}

absl::Status PlaceNamedFds(HandoverReceived* r) {
  std::vector<int> ours = HandoverFds(*r);
  std::sort(ours.begin(), ours.end());
  for (int fd : OpenFds()) {
    if (fd > STDERR_FILENO && !std::binary_search(ours.begin(), ours.end(), fd)) ::close(fd);
  }
  int floor = STDERR_FILENO + 1;
  for (const auto& [number, fd] : r->named) floor = std::max(floor, number + 1);
  absl::Status status;
  auto lift = [floor, &status](UniqueFd& fd) {
    if (!fd || fd.get() >= floor || !status.ok()) return;
    const int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, floor);
    if (moved < 0) {
      status = absl::ErrnoToStatus(errno, "--upgrade: move a received fd out of the way");
      return;
    }
    fd.Reset(moved);
  };
  lift(r->channel);
  for (UniqueFd& l : r->listeners) lift(l);
  lift(r->metrics);
  lift(r->log);
  if (r->kernel) {
    lift(r->kernel->socket);
    for (AdoptedListeners::Listener& l : r->kernel->listeners) {
      lift(l.listener);
      for (UniqueFd& c : l.channels) lift(c);
    }
  }
  for (auto& [number, fd] : r->named) lift(fd);
  if (!status.ok()) return status;
  for (auto& [number, fd] : r->named) {
    if (::dup3(fd.get(), number, O_CLOEXEC) < 0) {
      return absl::ErrnoToStatus(
          errno, StrCat("--upgrade: put the old daemon's fd ", number, " at the same number"));
    }
  }
  r->named.clear();  // the copies; each number now holds its socket
  return absl::OkStatus();
}

absl::Status CompleteHandover(HandoverReceived* received) {
  const int fd = received->channel.get();
  const std::string from = StrCat("pid ", received->old_pid);
  // With its pid: SO_PEERCRED names the process that connected, which -d
  // (or --upgrade) has left since.
  if (int err = SendMessage(fd, StrCat("READY ", ::getpid()), nullptr, 0); err != 0) {
    received->channel.Reset();
    return absl::ErrnoToStatus(err, StrCat("handover: tell ", from, " to stop"));
  }
  // The old daemon's workers stop (their drain: bounded by its
  // --dispatch-timeout); connections wait in the listeners' backlogs.
  SetTimeouts(fd, kStoppedTimeoutS);
  std::string data;
  std::vector<UniqueFd> fds;
  if (int err = ReceiveMessage(fd, &data, &fds); err != 0 || data != "STOPPED") {
    received->channel.Reset();
    return absl::ErrnoToStatus(
        err != 0 ? err : EPROTO,
        StrCat("handover: ", from, " did not confirm that it stopped accepting"));
  }
  // Kept open: the old daemon watches it for --handover-grace (handover.h).
  return absl::OkStatus();
}

void SayGoodbye(HandoverReceived* received) {
  if (!received->channel) return;
  (void)SendMessage(received->channel.get(), "BYE", nullptr, 0);
  received->channel.Reset();
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

void HandoverServer::SendStopped() {
  if (successor_) (void)SendMessage(successor_.get(), "STOPPED", nullptr, 0);
}

SuccessorEnd HandoverServer::ReadSuccessorEnd() {
  std::string data;
  std::vector<UniqueFd> ignored;
  const int err = ReceiveMessage(successor_.get(), &data, &ignored);
  successor_.Reset();
  return err == 0 && data == "BYE" ? SuccessorEnd::kBye : SuccessorEnd::kClosed;
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
    const Holder holder{peer->pid, CommandLineOf(peer->pid), NowMs()};
    if (Serve(conn.get(), holder)) {
      successor_ = std::move(conn);
      handed_over_(successor_pid_);
      return;
    }
  }
}

HandoverServer::Wait HandoverServer::WaitFor(int conn, int timeout_ms, const Holder& holder) {
  const int64_t deadline = NowMs() + timeout_ms;
  while (true) {
    const int64_t left = deadline - NowMs();
    if (left <= 0) return Wait::kTimeout;
    pollfd fds[3] = {{wake_.get(), POLLIN, 0}, {conn, POLLIN, 0}, {listener_.get(), POLLIN, 0}};
    if (::poll(fds, 3, static_cast<int>(left)) < 0) {
      if (errno == EINTR) continue;
      return Wait::kTimeout;
    }
    if (fds[0].revents != 0) return Wait::kStopped;
    if (fds[1].revents != 0) return Wait::kReadable;
    if (fds[2].revents != 0) AnswerBusy(holder);
  }
}

// Whoever asks while a successor holds the offer is told who holds it at
// once (rather than waiting in the backlog until its own request times out).
void HandoverServer::AnswerBusy(const Holder& holder) {
  UniqueFd other(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!other) return;
  const auto peer = PeerOf(other.get());
  if (!peer || (peer->uid != 0 && peer->uid != trusted_uid_)) {
    Log(StrCat("refused a successor with uid ", peer ? peer->uid : -1u, " (only root or uid ",
               trusted_uid_, " may take the listeners)"));
    return;
  }
  std::string busy = StrCat("BUSY ", holder.pid, " ", (NowMs() - holder.since_ms) / 1000, " ",
                            kHandoverReadyTimeoutS);
  busy.push_back('\0');
  busy += holder.command;
  (void)SendMessage(other.get(), busy, nullptr, 0);
  // Its request is read before closing: a Unix socket closed with unread
  // data makes the peer's next read fail (ECONNRESET) instead of returning
  // what was sent to it.
  pollfd fd{other.get(), POLLIN, 0};
  if (::poll(&fd, 1, 200) > 0) {
    char drain[64];
    (void)!::recv(other.get(), drain, sizeof(drain), MSG_DONTWAIT);
  }
  if (last_told_busy_ != holder.pid) {
    last_told_busy_ = holder.pid;
    Log(StrCat("pid ", peer->pid, " asked for the listeners while pid ", holder.pid,
               " holds the offer; told it so"));
  }
}

bool HandoverServer::Serve(int conn, const Holder& holder) {
  const std::string who = StrCat("successor pid ", holder.pid);
  SetTimeouts(conn, kHandoverStepTimeoutS);
  // The kernel attaches each message's sender (READY's: after the
  // successor's -d, and as this daemon's pid namespace sees it).
  const int one = 1;
  ::setsockopt(conn, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
  std::string data;
  std::vector<UniqueFd> ignored;
  Wait wait = WaitFor(conn, kHandoverStepTimeoutS * 1000, holder);
  if (wait == Wait::kStopped) return false;
  int err = wait == Wait::kReadable ? ReceiveMessage(conn, &data, &ignored) : ETIMEDOUT;
  if (err != 0 || data != "REQUEST") {
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
  if (kernel || !offer_.named_fds.empty()) {
    offer += StrCat(" ", kernel ? kernel->listeners.size() + 1 : 0);
  }
  if (!offer_.named_fds.empty()) offer += StrCat(" ", offer_.named_fds.size());
  offer.push_back('\0');
  offer += offer_.cwd;
  for (const std::string& arg : offer_.argv) {
    offer.push_back('\0');
    offer += arg;
  }
  std::vector<int> attached = {STDERR_FILENO};
  if (offer_.metrics_fd >= 0) attached.push_back(offer_.metrics_fd);
  err = SendMessage(conn, offer, attached.data(), attached.size());
  for (size_t sent = 0; err == 0 && sent < offer_.listener_fds.size();
       sent += kMaxFdsPerHandoverMessage) {
    const size_t count = std::min(kMaxFdsPerHandoverMessage, offer_.listener_fds.size() - sent);
    err = SendMessage(conn, StrCat("FDS ", count), offer_.listener_fds.data() + sent, count);
  }
  if (err == 0 && kernel) err = SendKernelListeners(conn, *kernel);
  for (size_t sent = 0; err == 0 && sent < offer_.named_fds.size();
       sent += kMaxFdsPerHandoverMessage) {
    const size_t count = std::min(kMaxFdsPerHandoverMessage, offer_.named_fds.size() - sent);
    std::string numbers = "NAMED";
    for (size_t i = sent; i < sent + count; ++i) numbers += StrCat(" ", offer_.named_fds[i]);
    err = SendMessage(conn, numbers, offer_.named_fds.data() + sent, count);
  }
  if (err != 0) {
    Log(StrCat(who, ": sending the listeners failed: ", std::strerror(err), "; still serving"));
    if (offer_.kernel != nullptr) offer_.kernel->Resume();
    return false;
  }
  Log(StrCat(
      offer_.listener_fds.size(), " listener(s)",
      offer_.named_fds.empty() ? "" : StrCat(" and ", offer_.named_fds.size(), " named fd(s)"),
      " sent to ", who, "; waiting for it to start"));
  // The successor's start-up: this daemon keeps accepting meanwhile.
  wait = WaitFor(conn, kHandoverReadyTimeoutS * 1000, holder);
  if (wait == Wait::kStopped) {  // this daemon is stopping anyway
    if (offer_.kernel != nullptr) offer_.kernel->Resume();
    return false;
  }
  ucred sender{};
  err = wait == Wait::kReadable ? ReceiveMessage(conn, &data, &ignored, &sender) : ETIMEDOUT;
  int pid = 0;
  if (err != 0 || std::sscanf(data.c_str(), "READY %d", &pid) != 1) {
    Log(StrCat(who, " did not take over (", err != 0 ? std::strerror(err) : "unknown message",
               "); still serving"));
    if (offer_.kernel != nullptr) offer_.kernel->Resume();
    return false;
  }
  listener_.Reset();  // one successor only
  successor_pid_ = sender.pid > 0 ? sender.pid : pid;
  // Its process, to learn when it ends: by the pid the kernel vouches for
  // (in this daemon's pid namespace; READY's is the successor's own view).
  if (sender.pid > 0) {
    successor_pidfd_.Reset(static_cast<int>(::syscall(SYS_pidfd_open, sender.pid, 0)));
  }
  Log(StrCat("successor pid ", successor_pid_,
             " takes over: no longer accepting; serving what was accepted"));
  return true;
}

}  // namespace sbx
