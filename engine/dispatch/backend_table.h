// One worker's backends: a connected AF_UNIX datagram socket per path
// (connect once; sendto(path) would resolve the path on every message), the
// borrowed fds of jump-fd / -i, reconnection with backoff after a backend
// goes away, and a bounded cache for -U substituted paths.
//
// Owned and used by one worker thread only. Backend pointers stay valid
// until the table is destroyed or, for substituted paths, evicted; a busy
// backend (DispatchState::busy) is never evicted.
#ifndef SBX_ENGINE_DISPATCH_BACKEND_TABLE_H_
#define SBX_ENGINE_DISPATCH_BACKEND_TABLE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/dispatch/fd_reserve.h"
#include "engine/dispatch/stats.h"
#include "engine/kernel/reply_relay.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

// What the receiver behind the current socket declared (receiver protocol,
// engine/core/receiver_protocol.h), and where its acknowledgements stand.
// Reset with every new socket.
struct ReceiverState {
  uint16_t max_fds = 1;         // fds it takes in one message
  bool acks = false;            // it acknowledges: sent connections are held until then
  uint64_t fds_sent = 0;        // fds that reached its queue on this socket
  uint64_t fds_acked = 0;       // of those, how many it said it took (a prefix: FIFO)
  uint64_t answers = 0;         // datagrams read from it (hellos, acks, anything else)
  uint64_t last_heard_ns = 0;   // its last hello or ack, or a probe that found it there
  uint64_t probe_after_ns = 0;  // silence before the next probe (doubles, up to a bound)
};

// The dispatch scheduler's state of one backend (dispatch_scheduler.h).
struct DispatchState {
  std::deque<uint32_t> waiting;  // dispatch slots waiting, in order
  std::deque<uint32_t> held;     // sent to an acknowledging receiver, not yet acked
  std::vector<uint32_t> ready;   // to a packing receiver: sent together at the turn's end
  uint32_t occupied = 0;         // the worker's slots this backend holds, in any state
  uint32_t in_flight = 0;        // sends started, result not yet back
  uint32_t last_burst_ok = 0;    // sends that went through since the last pump
  bool congested = false;        // queue full: waiting for writability
  bool watch_armed = false;      // a writability watch names this backend
  bool listed = false;           // on the scheduler's timer list
  bool holding = false;          // on the scheduler's list of backends holding ours

  // The scheduler may still name this backend: never evict it then.
  bool busy() const {
    return in_flight > 0 || !waiting.empty() || !held.empty() || !ready.empty() || watch_armed ||
           listed || holding;
  }
};

struct Backend {
  std::string path;        // actual path (after -U), empty for fd backends
  int borrowed_fd = -1;    // jump-fd / -i: never closed or reconnected by us
  UniqueFd socket;         // connected datagram socket while up
  std::string reply_name;  // the socket's abstract name (sun_path bytes), if it has one
  bool down = false;
  int last_error = 0;
  uint64_t retry_at_ns = 0;
  uint32_t backoff_ms = 0;
  uint64_t last_log_ns = 0;
  uint64_t last_redelivery_log_ns = 0;
  uint64_t redelivered_unlogged = 0;  // sent again since the last redelivery line
  DispatchState dispatch;
  ReceiverState receiver;
  uint32_t generation = 0;       // bumped with every new socket (send results name theirs)
  Counter* delivered = nullptr;  // by configured path
  uint64_t last_used = 0;        // for -U cache eviction
  bool substituted = false;      // made by -U: evictable when idle

  int fd() const { return borrowed_fd >= 0 ? borrowed_fd : socket.get(); }
  bool reconnectable() const { return borrowed_fd < 0; }
};

class BackendTable {
 public:
  // `stats` (and `reserve`, if given) outlive the table.
  // `max_substituted` bounds the -U cache.
  BackendTable(StatsRegistry* stats, size_t max_substituted, FdReserve* reserve = nullptr);
  ~BackendTable();

  // The backend for a path, connecting on first use. `counter_key` is the
  // configured path (before substitution) that delivery is counted under.
  Backend* ForPath(std::string_view path, std::string_view counter_key, uint64_t now_ns);
  Backend* ForFd(int fd);

  // Autobinds every path backend's socket from now on, so that receivers
  // can answer it (receiver protocol); for a worker that reads the answers.
  // With a relay, each name is registered there for `worker`, so that
  // answers from other network namespaces find it (reply_relay.h).
  void EnableReceiverReplies(ReplyRelay* relay = nullptr, int worker = 0) {
    receiver_replies_ = true;
    relay_ = relay;
    relay_worker_ = worker;
  }
  bool receiver_replies() const { return receiver_replies_; }

  // The backend for a configured path, if the table has it (no connect).
  Backend* Find(std::string_view path) const {
    auto it = by_path_.find(absl::string_view(path.data(), path.size()));
    return it == by_path_.end() ? nullptr : it->second.get();
  }

  // Marks `b` down after a send failed with `err` and schedules a retry.
  // Its socket is retired: closed by CloseRetired, once no prepared
  // submission can still name it.
  void MarkDown(Backend* b, int err, uint64_t now_ns);
  void CloseRetired() { retired_.clear(); }
  // Tries to connect a down backend whose retry time has come.
  bool TryReconnect(Backend* b, uint64_t now_ns);

  // Whether the backend for `path` is still in the table (not evicted).
  bool Holds(std::string_view path) const {
    return by_path_.contains(absl::string_view(path.data(), path.size()));
  }

  // Rate-limited log line for backend trouble (at most one per backend per 5 s).
  void LogTrouble(Backend* b, const char* what, int err, uint64_t now_ns);
  // One line per batch of connections sent again because the receiver went
  // away without taking them: at most one a second per backend (a backend
  // that re-binds its path in a loop must not flood the log); a line counts
  // what the suppressed ones would have said.
  void LogRedelivery(Backend* b, uint64_t redelivered, uint64_t now_ns);

 private:
  bool Connect(Backend* b, uint64_t now_ns);
  void NameForAnswers(Backend* b, uint64_t now_ns);
  void Retire(Backend* b);
  void EvictIdleSubstituted();

  StatsRegistry* stats_;
  size_t max_substituted_;
  FdReserve* reserve_;
  std::vector<UniqueFd> retired_;  // sockets of backends that went away
  absl::flat_hash_map<std::string, std::unique_ptr<Backend>> by_path_;
  absl::flat_hash_map<int, std::unique_ptr<Backend>> by_fd_;
  size_t substituted_count_ = 0;
  uint64_t use_clock_ = 0;
  bool receiver_replies_ = false;
  ReplyRelay* relay_ = nullptr;
  int relay_worker_ = 0;
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_BACKEND_TABLE_H_
