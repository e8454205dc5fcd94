// One relayed connection as a worker holds it: the two sockets, and per
// direction the bytes received but not yet sent (a fixed buffer, or a pipe
// in splice mode). A direction reads only when its pending bytes are gone,
// so a reader that stops reading stops the other side's reads: the memory
// per connection is fixed at start (2 x --buffer-size), never grows.
//
// Owned by one RelayWorker and touched only on its thread. Every request in
// flight counts in `inflight`; the object is freed only when that is zero,
// so no completion ever names freed memory.
#ifndef SBX_RELAY_CONNECTION_H_
#define SBX_RELAY_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "engine/core/address.h"
#include "engine/sys/unique_fd.h"
#include "relay/relay_stats.h"
#include "relay/target.h"

namespace sbx::relay {

struct Direction {
  int from = -1;  // borrowed from Connection
  int to = -1;
  std::unique_ptr<char[]> buffer;  // buffer mode
  UniqueFd pipe_read, pipe_write;  // splice mode
  uint32_t pending = 0;            // received, not yet sent
  uint32_t offset = 0;             // buffer mode: where the pending bytes start
  bool eof = false;                // `from` sent FIN: `to` gets (or got) SHUT_WR
  bool shut = false;               // the SHUT_WR on `to` completed
  uint64_t bytes = 0;
  int rounds = 0;  // splice mode: successes in a row (relay_worker.cc)
};

enum class ConnState { kConnecting, kRelaying, kClosing };

struct alignas(16) Connection {
  UniqueFd client;
  UniqueFd target;
  ResolvedTarget target_address;
  Direction up;        // client -> target
  Direction down;      // target -> client
  std::string header;  // PROXY header still to send (up, before any client byte)
  bool sent_header = false;
  ConnState state = ConnState::kConnecting;
  int inflight = 0;
  uint64_t started_ns = 0;
  uint64_t last_activity_ns = 0;
  CloseReason reason = CloseReason::kCompleted;
  bool reset_client = false;
  bool reset_target = false;
  bool timed_out = false;
  // The worker's list of open connections (for timeouts and draining).
  Connection* prev = nullptr;
  Connection* next = nullptr;
};

}  // namespace sbx::relay

#endif  // SBX_RELAY_CONNECTION_H_
