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
//   <- "BUSY PID SECONDS LIMIT\0CMDLINE" when another successor (PID) holds
//      the offer: the requester retries for 10 s, then names the holder
//   <- "OFFER L M[ K[ J]]\0CWD\0ARG0\0ARG1..."  + SCM_RIGHTS [stderr,
//      metrics if M=1]
//   <- "FDS N" + SCM_RIGHTS [N listeners], until L listeners are sent
//   <- with K > 0 ("OFFER L M K": kernel dispatch on):
//      "KERNEL" + SCM_RIGHTS [the listener socket], then K - 1 times
//      "KLISTENER PATH" + SCM_RIGHTS [a backend's listener, its channels]
//   <- with J > 0: "NAMED N1 N2 ..." + SCM_RIGHTS [the fds that were at
//      numbers N1, N2... in the old daemon: every inherited fd from 3 on
//      that can carry connections, which jump-fd:N and -i N may name],
//      until J are sent; --upgrade puts each at its number again
//   -> "READY PID"       (set up; the old daemon may stop)
//   <- "STOPPED"         (the old daemon's workers have stopped)
//   -> "BYE"             (at the successor's exit 0, on SIGTERM/SIGINT)
// Only then does the successor start its workers: an io_uring accept
// armed by the old daemon takes the kernel's (exclusive) wake-up for a new
// connection until it is cancelled, and a connection whose wake-up went to
// a cancelled accept would wait for the next arrival. Armed after the old
// ones are gone, the new accepts first take whatever queued meanwhile.
// If the successor goes away or is silent before READY, the old daemon
// keeps running as if nothing happened (its listeners were never touched).
// After STOPPED the old daemon keeps its copies of the listeners for
// --handover-grace seconds and watches the successor: its channel and its
// process (a pidfd of the pid the kernel attached to READY). If the process
// ends without "BYE" (it died), the old daemon takes the listeners back,
// starts its workers again and serves PATH anew; what was queued in the
// listeners meanwhile is served, only what the dead successor had accepted
// and not yet handed on is lost (daemon.cc, WatchSuccessor).
#ifndef SBX_ENGINE_DAEMON_HANDOVER_H_
#define SBX_ENGINE_DAEMON_HANDOVER_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kernel/listener_registry.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

// The handover's timings.
inline constexpr int kHandoverStepTimeoutS = 10;    // each step of the exchange
inline constexpr int kHandoverReadyTimeoutS = 120;  // a successor's start-up

// What a successor received from the daemon it replaces.
struct HandoverReceived {
  UniqueFd channel;  // to the old daemon: READY, STOPPED, then BYE at exit
  pid_t old_pid = 0;
  std::vector<UniqueFd> listeners;
  UniqueFd metrics;  // the --metrics-listen socket, if the old one had one
  UniqueFd log;      // the old daemon's standard error
  std::string cwd;
  std::vector<std::string> argv;
  std::optional<AdoptedListeners> kernel;  // kernel dispatch's listeners
  // The old daemon's inherited fds that can carry connections (jump-fd:N,
  // -i N), each with the number it had there.
  std::vector<std::pair<int, UniqueFd>> named;
};

// Every fd `received` holds.
std::vector<int> HandoverFds(const HandoverReceived& received);

// For --upgrade, before the daemon lists its inherited fds: closes every
// fd of the calling process other than 0-2 and those `received` holds (a
// postinst's pipes), moves the received ones out of the way, and puts each
// of the old daemon's named fds at the number it had there. The daemon
// then starts with the old one's fd environment: a jump-fd:N or -i N it
// names is the same socket, and any other number is refused by the check.
absl::Status PlaceNamedFds(HandoverReceived* received);

// The working directory, for a successor (taken before -d changes it).
std::string CurrentDirectory();

// Asks the daemon serving `path` for its listeners. nullopt when no daemon
// answers there (no such socket, or a stale one): the caller binds its own.
absl::StatusOr<std::optional<HandoverReceived>> RequestHandover(const std::string& path);

// Tells the old daemon that this one is set up (all but its workers); waits
// (60 s at most) until the old daemon's workers have stopped. An error means
// the old one may still be accepting too: both then serve the same sockets;
// logged. The channel stays open: the old daemon watches it (see above).
absl::Status CompleteHandover(HandoverReceived* received);

// At an orderly exit: tells the old daemon, if it still watches, that this
// one stops on purpose (it then leaves too, rather than taking over again).
void SayGoodbye(HandoverReceived* received);

// What a daemon offers its successor.
struct HandoverOffer {
  std::vector<int> listener_fds;
  int metrics_fd = -1;
  std::string cwd;
  std::vector<std::string> argv;
  // Kernel dispatch (may be null): stopped while a successor sets up, and
  // resumed if it does not take over. Told HandedOver() by the daemon, not
  // here: a successor that dies after READY is replaced by this daemon again.
  ListenerRegistry* kernel = nullptr;
  std::vector<int> named_fds;  // sent with the numbers they have here
};

// What the channel to a successor that took over says at its end.
enum class SuccessorEnd {
  kBye,     // it stops on purpose (exit 0)
  kClosed,  // closed without a word: it died, or it is of an earlier version
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
  // After Stop(): whether a successor took over (reported READY).
  bool has_successor() const { return successor_.valid(); }
  // After this daemon's workers have stopped: tells the successor, if one
  // took over, that it may start its own. The channel stays open.
  void SendStopped();
  // The channel to the successor that took over (-1 if none): readable
  // when it says BYE or dies (or, of an earlier version, closes it after
  // STOPPED).
  int successor_fd() const { return successor_.get(); }
  // After successor_fd() polled readable: what it means. Closes the channel.
  SuccessorEnd ReadSuccessorEnd();
  // A pidfd of the successor's process (-1 if it could not be had):
  // readable once it has exited.
  int successor_pidfd() const { return successor_pidfd_.get(); }

 private:
  // Who holds the offer, for the others who ask meanwhile.
  struct Holder {
    pid_t pid = 0;
    std::string command;  // /proc/PID/cmdline, "" if unreadable
    int64_t since_ms = 0;
  };
  enum class Wait { kReadable, kStopped, kTimeout };

  HandoverServer(std::string path, UniqueFd listener, UniqueFd wake, ino_t inode);
  void Serve();
  // True when the successor took over.
  bool Serve(int conn, const Holder& holder);
  // Waits until `conn` is readable, answering BUSY to whoever connects
  // meanwhile.
  Wait WaitFor(int conn, int timeout_ms, const Holder& holder);
  void AnswerBusy(const Holder& holder);

  std::string path_;
  UniqueFd listener_;
  UniqueFd wake_;  // eventfd: Stop() wakes the thread's poll
  ino_t inode_;    // PATH is removed at exit only if it is still ours
  uid_t trusted_uid_;
  HandoverOffer offer_;
  std::function<void(pid_t)> handed_over_;
  UniqueFd successor_;        // the connection to the successor that took over
  pid_t successor_pid_ = 0;   // as it said in READY (after its -d)
  UniqueFd successor_pidfd_;  // pidfd_open of READY's sender
  pid_t last_told_busy_ = 0;  // logged once per holder
  std::thread thread_;
};

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_HANDOVER_H_
