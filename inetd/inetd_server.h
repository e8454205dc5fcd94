// The socketbox-inetd main loop: receive a connection, start a child for it.
//
// One thread, one poll(2) over a signalfd and the receiving channel:
//   - the channel is an "A" datagram socket at a path (socketbox-inetd), or a
//     registration connection (socketbox-inetd-p) that is re-established with
//     backoff when the server goes away (ENOLINK);
//   - while -c children run, the channel is not polled: connections wait in
//     the sender's queue instead of being received and closed;
//   - on the datagram socket it speaks the receiver protocol
//     (engine/core/receiver_protocol.h): it takes up to kMaxFdsPerMessage
//     fds in one message (one child each; the fds a message brings beyond
//     the room -c leaves wait in `pending_` for children to exit, and the
//     channel is not polled meanwhile) and, with SKBOX_ACKNOWLEDGE=1,
//     acknowledges every message;
//   - with SKBOX_TAKE_LISTENER=1 (socketbox-inetd), the bound socket asks
//     the engine for its backend's listener (kernel dispatch,
//     engine/core/listener_request.h); when given, the listener is polled
//     beside the socket under the same -c rule, and every connection
//     accepted from it is handled exactly as a received one. The socket
//     keeps receiving (connections the kernel cannot steer still come that
//     way). When the engine closes the channel (it stopped or restarted),
//     what the listener still holds is served, the listener dropped, and the
//     listener asked for again with backoff;
//   - SIGCHLD reaps every child and frees its slot; SIGTERM / SIGINT stop
//     receiving, close (and count) what is still queued, and exit 0 (running
//     children are left to finish, as inetd does); SIGUSR1 logs the counters.
// Every connection is either given to a child or closed with a log line and
// a counter; the counters are logged at exit.
#ifndef SBX_INETD_INETD_SERVER_H_
#define SBX_INETD_INETD_SERVER_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "engine/core/receiver_protocol.h"
#include "engine/core/receiver_socket.h"
#include "engine/sys/unique_fd.h"
#include "inetd/child_table.h"
#include "inetd/options.h"
#include "inetd/spawner.h"

namespace sbx::inetd {

struct InetdStats {
  uint64_t received = 0;      // fds, also several from one message, and accepted ones
  uint64_t via_listener = 0;  // of `received`: accepted from the engine's listener
  uint64_t spawned = 0;
  uint64_t spawn_failed = 0;
  uint64_t per_source_rejected = 0;
  uint64_t strict_rejected = 0;
  uint64_t sender_refused = 0;  // not from a uid in SKBOX_SENDER_UIDS
  uint64_t gone_before_spawn = 0;
  uint64_t receive_errors = 0;
  uint64_t exited = 0;
  uint64_t exited_nonzero = 0;
  uint64_t reconnects = 0;
  uint64_t closed_at_exit = 0;     // queued when SIGTERM came
  uint64_t listener_requests = 0;  // asked the engine for the listener
  uint64_t listeners_taken = 0;    // ... and were given it
};

class InetdServer {
 public:
  // `signal_fd` reads the DaemonSignals set, which the caller has blocked.
  InetdServer(const InetdOptions& options, UniqueFd signal_fd);

  // Binds the socket or registers; false (after logging why) on failure.
  bool Start();
  // Until SIGTERM / SIGINT; returns the exit status.
  int Run();

  const InetdStats& stats() const { return stats_; }

 private:
  using Clock = std::chrono::steady_clock;

  bool Register();
  void TakeListener();
  void AcceptOne();
  void ListenerChannelClosed();
  void HandleSignals();
  void Reap();
  void ReceiveOne();
  void ServePending();
  void HandleConnection(UniqueFd connection);
  void DrainQueue();
  void PauseAfterError();
  int PollTimeoutMs() const;
  void LogStats(const char* when) const;

  const InetdOptions& options_;
  UniqueFd signal_fd_;
  std::optional<BoundSocket> bound_;  // datagram mode
  UniqueFd channel_;                  // the fd sockets arrive on
  UniqueFd listener_;                 // SKBOX_TAKE_LISTENER: the engine's listener
  UniqueFd listener_channel_;         // open while we serve listener_
  Spawner spawner_;
  ChildTable table_;
  std::vector<std::string> base_env_;
  SenderReplies replies_;         // inactive in registration mode
  std::deque<UniqueFd> pending_;  // received, waiting for room (-c)
  InetdStats stats_;
  bool stopping_ = false;
  // After a receive error or a lost registration: no receiving until then.
  Clock::time_point paused_until_{};
  std::chrono::milliseconds backoff_{0};
  // SKBOX_TAKE_LISTENER: when to ask the engine again (none pending: {}).
  Clock::time_point ask_again_at_{};
  std::chrono::milliseconds ask_backoff_{0};
};

}  // namespace sbx::inetd

#endif  // SBX_INETD_INETD_SERVER_H_
