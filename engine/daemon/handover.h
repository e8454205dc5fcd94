// Upgrades without loss: a running daemon hands its listening sockets to
// its successor over a Unix socket (as HAProxy and Envoy do), so that no
// connection queued in a listener's backlog is reset by a restart.
//
// `--handover PATH` makes the daemon serve PATH (a Unix seqpacket socket,
// mode 0600, peers checked with SO_PEERCRED: root or the user that started
// the daemon). A daemon started with the same `--handover PATH` while
// another serves it takes that daemon's listeners instead of binding its
// own (the same kernel sockets: their queues move with them), starts its
// workers, and then tells the old daemon, which stops accepting, serves
// what it already accepted (the SIGTERM drain) and exits 0.
// `socketbox --upgrade PATH` does the same with the old daemon's own
// command line and working directory, detached (-d), logging to the old
// daemon's standard error: what the package's postinst runs.
//
// Protocol (one seqpacket message each, new -> old / old -> new):
//   -> "REQUEST"
//   <- "OFFER L M\0CWD\0ARG0\0ARG1..."  + SCM_RIGHTS [stderr, metrics if M=1]
//   <- "FDS N" + SCM_RIGHTS [N listeners], until L listeners are sent
//   <- with K in the offer ("OFFER L M K": kernel dispatch on):
//      "KERNEL" + SCM_RIGHTS [the listener socket], then K - 1 times
//      "KLISTENER PATH" + SCM_RIGHTS [a backend's listener, its channels]
//   -> "READY PID"       (set up; the old daemon may stop)
//   <- "STOPPED"         (the old daemon's workers have stopped)
// Only then does the successor start its workers: an io_uring accept
// armed by the old daemon takes the kernel's (exclusive) wake-up for a new
// connection until it is cancelled, and a connection whose wake-up went to
// a cancelled accept would wait for the next arrival. Armed after the old
// ones are gone, the new accepts first take whatever queued meanwhile.
// If the successor goes away or is silent before READY, the old daemon
// keeps running as if nothing happened (its listeners were never touched).
#ifndef SBX_ENGINE_DAEMON_HANDOVER_H_
#define SBX_ENGINE_DAEMON_HANDOVER_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kernel/listener_registry.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

// What a successor received from the daemon it replaces.
struct HandoverReceived {
  UniqueFd channel;  // to the old daemon, for READY
  pid_t old_pid = 0;
  std::vector<UniqueFd> listeners;
  UniqueFd metrics;  // the --metrics-listen socket, if the old one had one
  UniqueFd log;      // the old daemon's standard error
  std::string cwd;
  std::vector<std::string> argv;
  std::optional<AdoptedListeners> kernel;  // kernel dispatch's listeners
};

// The working directory, for a successor (taken before -d changes it).
std::string CurrentDirectory();

// Asks the daemon serving `path` for its listeners. nullopt when no daemon
// answers there (no such socket, or a stale one): the caller binds its own.
absl::StatusOr<std::optional<HandoverReceived>> RequestHandover(const std::string& path);

// Tells the old daemon that this one is set up (all but its workers); waits
// (60 s at most) until the old daemon's workers have stopped. An error means
// the old one may still be accepting too: both then serve the same sockets;
// logged.
absl::Status CompleteHandover(HandoverReceived* received);

// What a daemon offers its successor.
struct HandoverOffer {
  std::vector<int> listener_fds;
  int metrics_fd = -1;
  std::string cwd;
  std::vector<std::string> argv;
  // Kernel dispatch (may be null): stops the registry and lists what it
  // holds, then says whether the successor took over (false: serve again).
  ListenerRegistry* kernel = nullptr;
};

// The old daemon's side: a thread serving PATH. Bound while privileged
// (under a temporary name, then renamed over PATH, so that a successor can
// be reached at PATH the moment the old one is gone).
class HandoverServer {
 public:
  static absl::StatusOr<std::unique_ptr<HandoverServer>> Open(const std::string& path);
  ~HandoverServer();
  HandoverServer(const HandoverServer&) = delete;
  HandoverServer& operator=(const HandoverServer&) = delete;

  // Serves successors until one reports READY; then calls `handed_over`
  // (from the server's thread) with its pid and stops.
  void Start(HandoverOffer offer, std::function<void(pid_t)> handed_over);
  void Stop();
  // After this daemon's workers have stopped: tells the successor, if one
  // took over, that it may start its own.
  void Finish();

 private:
  HandoverServer(std::string path, UniqueFd listener, UniqueFd wake, ino_t inode);
  void Serve();
  // True when the successor took over.
  bool Serve(int conn);

  std::string path_;
  UniqueFd listener_;
  UniqueFd wake_;  // eventfd: Stop() wakes the thread's poll
  ino_t inode_;    // PATH is removed at exit only if it is still ours
  uid_t trusted_uid_;
  HandoverOffer offer_;
  std::function<void(pid_t)> handed_over_;
  UniqueFd successor_;  // the connection to the successor that took over
  std::thread thread_;
};

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_HANDOVER_H_
