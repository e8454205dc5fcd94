#include "inetd/inetd_server.h"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>

#include "engine/core/fd_passing.h"
#include "engine/core/registration.h"
#include "inetd/child_env.h"
#include "inetd/log.h"

extern char** environ;

namespace sbx::inetd {
namespace {

constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};

// A child per fd, so any number of fds per message suits us. Not on the
// registration channel of -p: a seqpacket connection has no sender address.
ReceiverCapabilities Capabilities(const InetdOptions& options) {
  ReceiverCapabilities c;
  if (options.mode == Mode::kDatagram) {
    c.max_fds = kMaxFdsPerMessage;
    c.acks = options.acknowledge;
  }
  return c;
}

}  // namespace

InetdServer::InetdServer(const InetdOptions& options, UniqueFd signal_fd)
    : options_(options),
      signal_fd_(std::move(signal_fd)),
      spawner_(options.spawn_method, options.program),
      table_(options.max_children, options.max_per_source),
      replies_(Capabilities(options)) {
  base_env_ = BaseEnvironment(environ, /*drop_connection_names=*/options.set_environment);
}

bool InetdServer::Start() {
  if (options_.mode == Mode::kRegistration) return Register();
  auto bound = BindReceiverSocket(options_.socket_path, 0660, options_.senders.active());
  if (!bound.ok()) {
    Log("cannot create the receiving socket: %s", std::string(bound.status().message()).c_str());
    return false;
  }
  channel_ = std::move(bound->fd);
  bound_ = std::move(*bound);
  return true;
}

bool InetdServer::Register() {
  auto channel = RegisterWithServer(options_.socket_path, options_.group, kRegisterTimeoutMs,
                                    options_.senders.active());
  if (!channel.ok()) {
    const int err = channel.error();
    const char* why = err == EACCES   ? "the server refused the registration"
                      : err == EPROTO ? "malformed or missing response from the server"
                                      : std::strerror(err);
    Log("cannot register as group %" PRIu32 " at %s: %s", options_.group,
        options_.socket_path.c_str(), why);
    return false;
  }
  channel_ = std::move(*channel);
  return true;
}

int InetdServer::PollTimeoutMs() const {
  if (paused_until_ == Clock::time_point{}) return -1;
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(paused_until_ - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count() + 1));
}

void InetdServer::PauseAfterError() {
  backoff_ = backoff_.count() == 0 ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
  paused_until_ = Clock::now() + backoff_;
}

int InetdServer::Run() {
  while (!stopping_) {
    if (paused_until_ != Clock::time_point{} && Clock::now() >= paused_until_) {
      paused_until_ = {};
      if (!channel_ && options_.mode == Mode::kRegistration) {
        ++stats_.reconnects;
        if (Register()) {
          Log("registered again as group %" PRIu32 " at %s", options_.group,
              options_.socket_path.c_str());
          backoff_ = {};
        } else {
          PauseAfterError();
        }
      }
    }
    const bool want =
        channel_ && table_.HasRoom() && pending_.empty() && paused_until_ == Clock::time_point{};
    pollfd fds[2] = {{signal_fd_.get(), POLLIN, 0}, {want ? channel_.get() : -1, POLLIN, 0}};
    if (::poll(fds, 2, PollTimeoutMs()) < 0) {
      if (errno == EINTR) continue;
      Log("poll: %s", std::strerror(errno));
      LogStats("exiting");
      return 1;
    }
    if (fds[0].revents != 0) HandleSignals();
    if (!stopping_ && want && fds[1].revents != 0) ReceiveOne();
  }
  // Senders by path see it disappear first; then what is still queued is
  // taken out, counted and closed, so that no connection goes without a trace.
  if (bound_) RemoveIfStillOurs(*bound_);
  DrainQueue();
  channel_.Reset();
  Reap();
  LogStats("exiting on signal");
  return 0;
}

void InetdServer::HandleSignals() {
  signalfd_siginfo info;
  while (::read(signal_fd_.get(), &info, sizeof(info)) == sizeof(info)) {
    switch (info.ssi_signo) {
      case SIGCHLD:
        Reap();
        ServePending();
        break;
      case SIGTERM:
      case SIGINT:
        stopping_ = true;
        break;
      case SIGUSR1:
        LogStats("stats");
        break;
      default:
        Log("signal %u ignored (nothing to reload)", info.ssi_signo);
        break;
    }
  }
}

void InetdServer::Reap() {
  int status = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    if (!table_.Remove(pid)) continue;
    ++stats_.exited;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
    ++stats_.exited_nonzero;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
      Log("child %d exited with status 127 (could not run %s?)", static_cast<int>(pid),
          spawner_.program_name().c_str());
    }
  }
}

void InetdServer::ReceiveOne() {
  ReceiveOptions receive;
  receive.strict = options_.strict;
  receive.recv_flags = MSG_DONTWAIT;
  receive.rejected = &stats_.strict_rejected;
  receive.senders = &options_.senders;
  const uint64_t refused_before = stats_.sender_refused;
  receive.refused = &stats_.sender_refused;
  if (replies_.capabilities().active()) receive.replies = &replies_;
  UniqueFd fds[kMaxFdsPerMessage];
  auto received = ReceiveFds(channel_.get(), fds, replies_.capabilities().max_fds, receive);
  if (stats_.sender_refused != refused_before) {
    Log("refused %" PRIu64 " socket(s) from a sender not in %s (closed unread)",
        stats_.sender_refused - refused_before, kSenderUidsVariable);
  }
  if (received.ok()) {
    backoff_ = {};
    for (size_t i = 0; i < *received; ++i) pending_.push_back(std::move(fds[i]));
    ServePending();
    return;
  }
  const int err = received.error();
  if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return;
  ++stats_.receive_errors;
  if (err == ENOLINK && options_.mode == Mode::kRegistration) {
    Log("registration server at %s went away; registering again with backoff",
        options_.socket_path.c_str());
    channel_.Reset();
  } else {
    Log("receiving from %s: %s", options_.socket_path.c_str(), std::strerror(err));
  }
  PauseAfterError();
}

// Each received fd in order, while -c leaves room; the rest wait for a child
// to exit (SIGCHLD).
void InetdServer::ServePending() {
  while (!pending_.empty() && table_.HasRoom()) {
    UniqueFd connection = std::move(pending_.front());
    pending_.pop_front();
    HandleConnection(std::move(connection));
  }
}

void InetdServer::DrainQueue() {
  uint64_t closed = pending_.size();
  pending_.clear();
  if (channel_) {
    // Not acknowledged: an engine that holds fds until acked can give these
    // to another receiver once this socket is gone.
    ReceiveOptions receive;
    receive.strict = StrictLevel::kAny;
    receive.recv_flags = MSG_DONTWAIT;
    UniqueFd fds[kMaxFdsPerMessage];
    SysResult<size_t> got = 0;
    while ((got = ReceiveFds(channel_.get(), fds, kMaxFdsPerMessage, receive)).ok()) {
      closed += *got;
    }
  }
  stats_.closed_at_exit += closed;
  if (closed != 0) {
    Log("closed %" PRIu64 " queued connection(s) not served before exit", closed);
  }
}

void InetdServer::HandleConnection(UniqueFd connection) {
  ++stats_.received;
  auto info = QueryConnection(connection.get());
  if (!info.ok()) {
    ++stats_.gone_before_spawn;
    Log("received connection is not usable (%s); closed", std::strerror(info.error()));
    return;
  }
  std::string source = SourceKey(*info, options_.source_prefix6);
  if (!table_.SourceHasRoom(source)) {
    ++stats_.per_source_rejected;
    Log("per-source limit (%" PRIu64 ") reached for %s; connection closed", options_.max_per_source,
        source.c_str());
    return;
  }
  std::vector<std::string> vars;
  if (options_.set_environment) vars = ConnectionVariables(*info);
  ChildEnvironment env(base_env_, std::move(vars));
  auto pid = spawner_.Spawn(connection.get(), env.envp());
  if (!pid.ok()) {
    ++stats_.spawn_failed;
    Log("cannot start %s: %s; connection from %s closed", spawner_.program_name().c_str(),
        std::strerror(pid.error()), source.empty() ? "a local peer" : source.c_str());
    return;
  }
  table_.Add(*pid, std::move(source));
  ++stats_.spawned;
}

void InetdServer::LogStats(const char* when) const {
  Log("%s: received=%" PRIu64 " spawned=%" PRIu64 " spawn_failed=%" PRIu64
      " per_source_rejected=%" PRIu64 " strict_rejected=%" PRIu64 " sender_refused=%" PRIu64
      " gone_before_spawn=%" PRIu64 " receive_errors=%" PRIu64 " running=%zu exited=%" PRIu64
      " exited_nonzero=%" PRIu64 " reconnects=%" PRIu64 " closed_at_exit=%" PRIu64,
      when, stats_.received, stats_.spawned, stats_.spawn_failed, stats_.per_source_rejected,
      stats_.strict_rejected, stats_.sender_refused, stats_.gone_before_spawn,
      stats_.receive_errors, table_.size(), stats_.exited, stats_.exited_nonzero, stats_.reconnects,
      stats_.closed_at_exit);
}

}  // namespace sbx::inetd
