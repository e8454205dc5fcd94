// Kernel dispatch, the engine's side of the listeners: one TCP listening
// socket per backend path, created when a receiver first asks for it, handed
// to every receiver that proves it holds the backend's socket, and kept by
// the engine for its whole life, so that what is queued in it survives a
// backend's crash or restart (the restarted receiver gets the same listener).
//
// One thread serves the listener socket (listener_request.h says the wire
// format) and watches each receiver's channel. When the last channel of a
// listener closes, the listener stays in the kernel's map for
// --dispatch-timeout: a receiver that comes back in time finds its queue
// intact. After that the engine takes it out of the map (new connections go
// to the engine's own listeners and the io_uring path again) and hands it to
// the ListenerReclaimer, which sends what is queued to the backend's path the
// classic way. At shutdown, listeners nobody serves are reclaimed too.
//
// Who may take a listener: a request carries the receiving socket; it must
// be the socket bound at the backend's path (the same socket inode), and its
// sender must be root or the owner of the path's socket file (the kernel's
// SCM_CREDENTIALS): an inode number alone is a 32-bit counter that another
// user could cycle to.
//
// Everything a request carries that the registry does not keep is closed on
// a BackgroundCloser: close(2) of a hostile fd can block.
//
// A steering listener is bound to [::]:P (one socket that takes IPv4 and
// IPv6); the program refuses any connection to port P that it did not steer
// (SteeringProgram::GuardPort), so the listener is reachable only through the
// steering.
#ifndef SBX_ENGINE_KERNEL_LISTENER_REGISTRY_H_
#define SBX_ENGINE_KERNEL_LISTENER_REGISTRY_H_

#include <poll.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/core/route_table.h"
#include "engine/kernel/listener_reclaimer.h"
#include "engine/kernel/reply_relay.h"
#include "engine/kernel/steering_program.h"
#include "engine/sys/background_closer.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

struct ListenerRegistryConfig {
  std::string socket_path;  // --listener-socket
  int dispatch_timeout_ms = 2000;
  int backlog = 4096;
  bool substitute = false;  // -U
};

// What the kernel path did, for the stats line and Prometheus.
struct KernelDispatchCounts {
  struct Backend {
    std::string path;
    uint64_t steered = 0;
    bool attended = false;  // a receiver holds the listener now
  };
  std::vector<Backend> backends;
  std::array<uint64_t, SBX_COUNT_MAX> program{};  // steering_abi.h's sbx_steer_counter
  uint64_t granted = 0;                           // listeners handed to receivers
  uint64_t refused = 0;         // requests refused (not a backend's socket, garbage)
  uint64_t reclaimed = 0;       // queued connections the engine sent the classic way
  uint64_t reclaim_failed = 0;  // ... and those it had to close
  uint64_t reply_channels = 0;  // channels granted alone (kRequestReplyChannelOnly)
  uint64_t relayed = 0;         // hellos and acks that came over a channel (reply_relay.h)
  uint64_t relay_unknown = 0;   // ... naming no sending socket of this daemon's
};

// A registry's state as it crosses an upgrade (--handover): the listener
// socket, and per backend path its listener and the channels of the
// receivers that hold it. The successor attaches its own program (both run
// until the old daemon exits; they assign the same sockets).
struct ListenerHandover {
  struct Listener {
    std::string path;
    int listener = -1;          // borrowed from the old registry
    std::vector<int> channels;  // borrowed
  };
  int socket = -1;  // borrowed
  std::vector<Listener> listeners;
};
struct AdoptedListeners {
  UniqueFd socket;
  struct Listener {
    std::string path;
    UniqueFd listener;
    std::vector<UniqueFd> channels;
  };
  std::vector<Listener> listeners;
};

class ListenerRegistry {
 public:
  // Binds the listener socket at config.socket_path (mode 0666: who may
  // take what is decided by the sockets a request carries, not by who can
  // reach the path). A stale socket file there is replaced; a live one
  // (another daemon answers) is an error.
  static absl::StatusOr<std::unique_ptr<ListenerRegistry>> Open(SteeringProgram* program,
                                                                ListenerRegistryConfig config);
  // A predecessor's registry, taken over: same socket, same listeners and
  // queues, same receivers. Listeners with no receiver start their
  // --dispatch-timeout now.
  static absl::StatusOr<std::unique_ptr<ListenerRegistry>> Adopt(SteeringProgram* program,
                                                                 ListenerRegistryConfig config,
                                                                 AdoptedListeners adopted);
  ~ListenerRegistry();

  // For a successor: stops serving (requests wait in the socket) and lists
  // what it holds. Resume() serves again if the successor did not take
  // over; HandedOver() if it did (the socket's path is the successor's now).
  ListenerHandover Export();
  void Resume();
  void HandedOver() { handed_over_.store(true); }

  // The configuration to steer by (start-up and each reload): listener
  // slots for its paths, then the program's maps, swapped in one update.
  // Returns the lines for the log: paths the kernel cannot steer, and why.
  absl::StatusOr<std::vector<std::string>> Publish(std::shared_ptr<const RouteTable> table);

  // Where relayed replies from the channels go (reply_relay.h); without
  // one they are read and dropped. Before Start.
  void SetRelay(ReplyRelay* relay) { relay_ = relay; }

  void Start();
  void Stop();  // joins the thread; listeners stay open until destruction
  // At shutdown (after Stop, unless handed over): every listener out of the
  // kernel's map, and what is queued in those nobody serves sent on, each
  // within --dispatch-timeout.
  void Drain();

  KernelDispatchCounts Counts() const;
  const std::string& socket_path() const { return config_.socket_path; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Slot {
    uint32_t index = 0;
    std::string path;
    UniqueFd listener;  // invalid until a receiver first asks
    uint16_t port = 0;  // the guarded port it is bound to
    std::vector<UniqueFd> channels;
    std::vector<UniqueFd> reply_channels;  // granted alone: they hold no listener
    std::optional<Clock::time_point> unattended_since;
    bool in_map = false;
    // Set when a receiver takes the listener again: the reclaim job on it
    // (if any) stops.
    std::shared_ptr<std::atomic<bool>> reclaim_cancelled;
  };
  // A request's parts, once its fds passed the type checks.
  struct Request {
    UniqueFd receiving;  // AF_UNIX SOCK_DGRAM
    UniqueFd channel;    // AF_UNIX SOCK_SEQPACKET
    std::string hint;
    uid_t uid = 0;  // the sender's, from SCM_CREDENTIALS
    uint32_t flags = 0;
  };

  ListenerRegistry(SteeringProgram* program, ListenerRegistryConfig config, UniqueFd socket);
  void Run();
  int PollTimeoutLocked(Clock::time_point now) const;
  void ReadChannels(const std::vector<pollfd>& fds, const std::vector<std::string>& paths);
  void ServeRequests();
  std::optional<Request> ReadRequest();
  void Grant(Request request);
  void Answer(int channel, uint32_t status, int listener_fd);
  // The slot whose path the socket `fd` is bound at, by kernel identity
  // (`hint` first): nullptr when none, or when a scan of every path was
  // due but made too recently (then `throttled`).
  Slot* FindOwner(int fd, const std::string& hint, bool* throttled);
  // A listener that still listens on its guarded port, or a new one (a
  // receiver may have shut it down or listened again on another port).
  absl::Status EnsureListener(Slot* slot);
  void DropChannels(const std::vector<int>& hung_up);
  void ExpireUnattended(Clock::time_point now);
  void TakeBack(Slot* slot);

  SteeringProgram* const program_;
  ReplyRelay* relay_ = nullptr;
  const ListenerRegistryConfig config_;
  UniqueFd socket_;
  UniqueFd wake_;  // eventfd: Stop
  std::atomic<bool> stop_{false};
  std::atomic<bool> handed_over_{false};  // set on the handover thread
  std::thread thread_;
  BackgroundCloser closer_;
  ListenerReclaimer reclaimer_;

  mutable std::mutex mu_;
  std::shared_ptr<const RouteTable> table_;
  std::map<std::string, Slot, std::less<>> slots_;  // by path
  std::vector<uint32_t> free_slots_;                // of paths no longer named
  uint32_t next_slot_ = 0;
  static constexpr size_t kMaxChannelsPerListener = 64;  // and as many reply channels
  // Relayed replies read from one channel per turn: a flooding receiver
  // waits its turn behind the others.
  static constexpr size_t kRepliesPerChannelTurn = 16;
  static constexpr std::chrono::milliseconds kFullScanInterval{20};
  Clock::time_point last_full_scan_{};
  std::atomic<uint64_t> granted_{0}, refused_{0}, reply_channels_granted_{0};
};

}  // namespace sbx

#endif  // SBX_ENGINE_KERNEL_LISTENER_REGISTRY_H_
