// The daemon's life: start-up in the original's order (fixing its faults),
// the workers, and the main thread's signal loop (SIGHUP reload, SIGUSR1
// stats, SIGTERM/SIGINT drain and exit 0).
#ifndef SBX_ENGINE_DAEMON_DAEMON_H_
#define SBX_ENGINE_DAEMON_DAEMON_H_

#include <optional>

#include "engine/daemon/handover.h"
#include "engine/daemon/options.h"

namespace sbx {

// Returns the process exit status: 0 after SIGTERM/SIGINT or when the
// registration server goes away; 1 for any start-up error (with a message
// on stderr, before any socket is bound when the configuration or the
// command line is at fault); 11 when the -i peer is gone; 127 when -e
// cannot exec.
// `upgrade`: what `socketbox --upgrade` already received from the daemon
// it replaces (whose command line `options` came from).
int RunDaemon(const Options& options, std::optional<HandoverReceived> upgrade = std::nullopt);

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_DAEMON_H_
