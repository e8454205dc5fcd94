// What the worker says on stderr about failures, once per kind (the counters
// keep the numbers), the per-connection line, and the reset-on-close switch:
// shared by the source side (relay_source.cc) and the data path
// (relay_worker.cc).
#ifndef SBX_RELAY_DIAGNOSTICS_H_
#define SBX_RELAY_DIAGNOSTICS_H_

#include <optional>
#include <string>

#include "engine/core/address.h"
#include "relay/log.h"

namespace sbx::relay {

enum LogKind {
  kLogRefused,
  kLogUnreachable,
  kLogConnectTimeout,
  kLogNotConnected,
  kLogNat64,
  kLogUnixRefused,
  kLogNoResources,
  kLogProxyClosed,
  kLogSourceError,
  kLogNoFd,
  kLogKinds
};

// Logs "WHAT: strerror(err) (WHERE; further ones are only counted)" the first
// time `kind` happens in this process; nothing after that.
void LogCause(LogKind kind, const char* what, int err, const std::string& where);

// One line per connection on stderr, client then the address it reached.
// kOriginal: "EPOCH [client]:port -> [local]:port" with no prefix, as the
// original wrote it (IPv4 as ::ffff:a.b.c.d, no scope id; a Unix client,
// which has no address, as [::]:0). kDetailed: "socketbox-relay: ISO-TIME
// [client]:port -> [local]:port" ("[unix]" for a Unix client).
void LogConnection(LogFormat format, const std::optional<SocketAddress>& peer,
                   const std::optional<SocketAddress>& local);

// SO_LINGER 0: closing sends a reset, so the peer learns the other side failed.
void SetResetOnClose(int fd);

}  // namespace sbx::relay

#endif  // SBX_RELAY_DIAGNOSTICS_H_
