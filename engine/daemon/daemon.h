// The daemon's life: start-up in the original's order (fixing its faults),
// the workers, and the main thread's signal loop (SIGHUP reload, SIGUSR1
// stats, SIGTERM/SIGINT drain and exit 0).
#ifndef SBX_ENGINE_DAEMON_DAEMON_H_
#define SBX_ENGINE_DAEMON_DAEMON_H_

#include "engine/daemon/options.h"

namespace sbx {

// Returns the process exit status: 0 after SIGTERM/SIGINT or when the
// registration server goes away; 1 for any start-up error (with a message
// on stderr, before any socket is bound when the configuration or the
// command line is at fault); 11 when the -i peer is gone; 127 when -e
// cannot exec.
int RunDaemon(const Options& options);

}  // namespace sbx

#endif  // SBX_ENGINE_DAEMON_DAEMON_H_
