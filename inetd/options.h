// Command lines of socketbox-inetd and socketbox-inetd-p.
//
//   socketbox-inetd   [OPTIONS] SOCKPATH PROG [ARGS...]
//   socketbox-inetd-p [OPTIONS] CTLPATH GROUP PROG [ARGS...]
//
// The original takes no options, so every original command line still means
// the same. Options stop at the first non-option (getopt "+"), so PROG's own
// options are never taken for ours. Numbers are strict (no atoi).
//
//   -c N     at most N children at once; while N run, no socket is received,
//            so connections wait in the queue instead of being dropped (0: no
//            limit, the default)
//   -C N     at most N children per remote IP address; a connection above it
//            is closed and logged (0: no limit, the default)
//   -L LEN   with -C, count IPv6 clients by their /LEN prefix (default 128;
//            e.g. 64: one limit for a whole /64); IPv4 by full address
//   -m fork|spawn   how children are started (default spawn: posix_spawn,
//            which glibc runs as clone(CLONE_VM|CLONE_VFORK))
//   -E       do not add the connection variables to the child's environment
//
// SKBOX_STRICT_STREAM_MODE (0, 1, 2; default 2) chooses which received fds
// are accepted (reference §4.1). SKBOX_SENDER_UIDS=UID[,UID...] accepts
// sockets only from processes of those users (engine/core/sender_filter.h).
// SKBOX_ACKNOWLEDGE=1 (ours; 0 or unset: off) acknowledges every received
// message to its sender (docs/receiver-protocol.md); socketbox-inetd only,
// since the registration channel of -p has no sender address to answer.
// SKBOX_TAKE_LISTENER=1 (ours; 0 or unset: off) asks the engine, with the
// bound socket, for the listener its kernel program steers this backend's
// connections into (engine/core/listener_request.h; the engine's request
// socket is SKBOX_LISTENER_SOCKET, default /run/socketbox/listeners.sock),
// and accepts from it beside receiving; socketbox-inetd only, since -p binds
// no socket to ask with.
#ifndef SBX_INETD_OPTIONS_H_
#define SBX_INETD_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/core/fd_passing.h"
#include "engine/core/sender_filter.h"

namespace sbx::inetd {

enum class Mode { kDatagram, kRegistration };
enum class SpawnMethod { kFork, kPosixSpawn };

struct InetdOptions {
  Mode mode = Mode::kDatagram;
  std::string socket_path;           // SOCKPATH or CTLPATH
  uint32_t group = 0;                // GROUP (registration mode)
  std::vector<std::string> program;  // PROG and its ARGS
  uint64_t max_children = 0;         // 0: unlimited
  uint64_t max_per_source = 0;       // 0: unlimited
  int source_prefix6 = 128;          // IPv6 prefix length of a source
  SpawnMethod spawn_method = SpawnMethod::kPosixSpawn;
  bool set_environment = true;
  StrictLevel strict = StrictLevel::kStreamInetUnix;
  SenderFilter senders;        // inactive: every sender accepted
  bool acknowledge = false;    // SKBOX_ACKNOWLEDGE=1
  bool take_listener = false;  // SKBOX_TAKE_LISTENER=1
};

inline constexpr char kAcknowledgeVariable[] = "SKBOX_ACKNOWLEDGE";
inline constexpr char kTakeListenerVariable[] = "SKBOX_TAKE_LISTENER";

// `strict_env`, `senders_env`, `acknowledge_env` and `take_listener_env` are
// the values of SKBOX_STRICT_STREAM_MODE, SKBOX_SENDER_UIDS,
// SKBOX_ACKNOWLEDGE and SKBOX_TAKE_LISTENER (nullptr if unset).
absl::StatusOr<InetdOptions> ParseInetdOptions(Mode mode, const std::vector<std::string>& args,
                                               const char* strict_env,
                                               const char* senders_env = nullptr,
                                               const char* acknowledge_env = nullptr,
                                               const char* take_listener_env = nullptr);

// The strict level named by SKBOX_STRICT_STREAM_MODE's value (nullptr: default).
absl::StatusOr<StrictLevel> ParseStrictLevel(const char* value);

// The group number as the original reads it (strtoul base 0): decimal, 0x
// hexadecimal, or octal with a leading 0.
absl::StatusOr<uint32_t> ParseGroup(const std::string& text);

std::string InetdUsage(Mode mode);

}  // namespace sbx::inetd

#endif  // SBX_INETD_OPTIONS_H_
