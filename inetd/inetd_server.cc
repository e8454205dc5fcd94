#include "inetd/inetd_server.h"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>

#include "engine/core/fd_passing.h"
#include "engine/core/listener_request.h"
#include "engine/core/printable.h"
#include "engine/core/registration.h"
#include "engine/sys/stderr_log.h"
#include "inetd/child_env.h"

extern char** environ;

namespace sbx::inetd {
namespace {

constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};
// SKBOX_TAKE_LISTENER: how long the engine has to answer, and how often it is
// asked again while there is none (it stopped, restarted, or is not up yet).
constexpr int kListenerRequestTimeoutMs = 1000;
constexpr std::chrono::milliseconds kFirstAskBackoff{1000};
constexpr std::chrono::milliseconds kMaxAskBackoff{60000};
// When the engine hangs up: at most this many connections the listener still
// holds are accepted before it is dropped.
constexpr int kMaxDrainOnHangup = 4096;

// The answers that mean "no engine there (now)": asked again later. Any other
// (EOPNOTSUPP, EPERM, ETIMEDOUT, EPROTO) is final for this process.
bool NoEngineYet(int err) { return err == ENOENT || err == ECONNREFUSED || err == ECONNRESET; }

// Paths and names from the command line and SKBOX_LISTENER_SOCKET, as the
// log shows them: escaped, so that none can start a line of its own.
PrintableText Shown(std::string_view text) { return PrintableText(text, kPrintableMaxShown); }

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
  if (options_.mode == Mode::kRegistration) {
    if (options_.take_listener) {
      Log("%s=1 ignored: socketbox-inetd-p binds no socket to ask the engine with",
          kTakeListenerVariable);
    }
    return Register();
  }
  auto bound = BindReceiverSocket(options_.socket_path, 0660, options_.senders.active());
  if (!bound.ok()) {
    Log("cannot create the receiving socket: %s", std::string(bound.status().message()).c_str());
    return false;
  }
  channel_ = std::move(bound->fd);
  bound_ = std::move(*bound);
  if (options_.take_listener) TakeListener();
  return true;
}

// Kernel dispatch: the bound socket asks the engine for its backend's
// listener. Whatever the answer, the socket keeps receiving as before.
void InetdServer::TakeListener() {
  const bool first = stats_.listener_requests++ == 0;
  const char* engine = ListenerSocketPath();
  auto taken = RequestListener(channel_.get(), engine, options_.socket_path.c_str(),
                               kListenerRequestTimeoutMs);
  if (!taken.ok()) {
    const int err = taken.error();
    const bool again = NoEngineYet(err);
    if (first) {
      Log("no listener from the engine at %s (%s): connections come over %s only%s",
          Shown(engine).text, std::strerror(err), Shown(options_.socket_path).text,
          again ? "; asking again from time to time" : "");
    }
    if (again) {
      ask_backoff_ =
          ask_backoff_.count() == 0 ? kFirstAskBackoff : std::min(ask_backoff_ * 2, kMaxAskBackoff);
      ask_again_at_ = Clock::now() + ask_backoff_;
    }
    return;
  }
  listener_ = std::move(taken->listener);
  listener_channel_ = std::move(taken->channel);
  // Answers the engine's sending socket cannot take (it is in another
  // network namespace) go over the channel.
  replies_.set_relay(listener_channel_.get());
  ++stats_.listeners_taken;
  ask_backoff_ = {};
  ask_again_at_ = {};
  Log("took the engine's listener for %s (kernel dispatch); %s keeps receiving", Shown(engine).text,
      Shown(options_.socket_path).text);
}

// One connection from the engine's listener (poll said it has one).
void InetdServer::AcceptOne() {
  UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (connection) {
    backoff_ = {};
    ++stats_.via_listener;
    HandleConnection(std::move(connection));
    return;
  }
  const int err = errno;
  if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED) return;
  ++stats_.receive_errors;
  if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
    Log("accepting from the engine's listener: %s", std::strerror(err));
    PauseAfterError();
    return;
  }
  Log("accepting from the engine's listener: %s; dropped it, connections come over %s only",
      std::strerror(err), Shown(options_.socket_path).text);
  listener_.Reset();
  replies_.set_relay(-1);
  listener_channel_.Reset();
}

// The engine closed the channel (it stopped, or restarted): nothing new is
// steered to this listener. What it still holds is served (queued for room
// under -c), then the listener is dropped and asked for again.
void InetdServer::ListenerChannelClosed() {
  int drained = 0;
  for (; drained < kMaxDrainOnHangup; ++drained) {
    pollfd p{listener_.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) != 1 || (p.revents & POLLIN) == 0) break;
    UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!connection) break;
    ++stats_.via_listener;
    pending_.push_back(std::move(connection));
  }
  Log("the engine closed the listener channel (it stopped or restarted); took the %d "
      "connection(s) the listener still held; asking for a listener again",
      drained);
  listener_.Reset();
  replies_.set_relay(-1);
  listener_channel_.Reset();
  ask_backoff_ = kFirstAskBackoff;
  ask_again_at_ = Clock::now() + ask_backoff_;
  ServePending();
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
        Shown(options_.socket_path).text, why);
    return false;
  }
  channel_ = std::move(*channel);
  return true;
}

int InetdServer::PollTimeoutMs() const {
  Clock::time_point due = paused_until_;
  if (due == Clock::time_point{} || (ask_again_at_ != Clock::time_point{} && ask_again_at_ < due)) {
    due = ask_again_at_;
  }
  if (due == Clock::time_point{}) return -1;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(due - Clock::now());
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
              Shown(options_.socket_path).text);
          backoff_ = {};
        } else {
          PauseAfterError();
        }
      }
    }
    if (ask_again_at_ != Clock::time_point{} && Clock::now() >= ask_again_at_) {
      ask_again_at_ = {};
      TakeListener();
    }
    const bool want =
        channel_ && table_.HasRoom() && pending_.empty() && paused_until_ == Clock::time_point{};
    // The listener is polled under the same rule as the socket; its channel
    // always, for the engine's hang-up.
    pollfd fds[4] = {{signal_fd_.get(), POLLIN, 0},
                     {want ? channel_.get() : -1, POLLIN, 0},
                     {want && listener_ ? listener_.get() : -1, POLLIN, 0},
                     {listener_channel_ ? listener_channel_.get() : -1, POLLIN, 0}};
    if (::poll(fds, 4, PollTimeoutMs()) < 0) {
      if (errno == EINTR) continue;
      Log("poll: %s", std::strerror(errno));
      LogStats("exiting");
      return 1;
    }
    if (fds[0].revents != 0) HandleSignals();
    if (!stopping_ && want && fds[1].revents != 0) ReceiveOne();
    if (!stopping_ && want && listener_ && fds[2].revents != 0 && table_.HasRoom() &&
        pending_.empty()) {
      AcceptOne();
    }
    if (!stopping_ && listener_channel_ && fds[3].revents != 0) {
      // The engine says nothing more on it: anything readable is its end.
      char byte;
      const ssize_t n = ::recv(listener_channel_.get(), &byte, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        ListenerChannelClosed();
      }
    }
  }
  // Senders by path see it disappear first; then what is still queued is
  // taken out, counted and closed, so that no connection goes without a trace.
  // The listener is the engine's: what its queue holds stays with the engine
  // (closing the channel tells it nobody serves that listener now).
  if (bound_) RemoveIfStillOurs(*bound_);
  replies_.set_relay(-1);
  listener_channel_.Reset();
  listener_.Reset();
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
          Shown(spawner_.program_name()).text);
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
        Shown(options_.socket_path).text);
    channel_.Reset();
  } else {
    Log("receiving from %s: %s", Shown(options_.socket_path).text, std::strerror(err));
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
    Log("cannot start %s: %s; connection from %s closed", Shown(spawner_.program_name()).text,
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
      " exited_nonzero=%" PRIu64 " reconnects=%" PRIu64 " closed_at_exit=%" PRIu64
      " via_listener=%" PRIu64 " listeners_taken=%" PRIu64,
      when, stats_.received, stats_.spawned, stats_.spawn_failed, stats_.per_source_rejected,
      stats_.strict_rejected, stats_.sender_refused, stats_.gone_before_spawn,
      stats_.receive_errors, table_.size(), stats_.exited, stats_.exited_nonzero, stats_.reconnects,
      stats_.closed_at_exit, stats_.via_listener, stats_.listeners_taken);
}

}  // namespace sbx::inetd
