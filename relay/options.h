// The command line of socketbox-relay.
//
// The original's options (getopt "I:n:c:p:l:u:NxP:s:ei", reference §7.1)
// keep their meaning, so an existing command line works unchanged:
//   -s PATH    bind an "A" receiving socket at PATH and relay the connections
//              passed to it
//   -l FD      an inherited socket (default 0): a TCP socket the relay
//              listens on and accepts from, or with -e a receiving socket
//              (datagram, or a connected stream/seqpacket Unix socket)
//   -e         see -l
//   -c ADDR    TCP target address, IPv6 text (::ffff:a.b.c.d for IPv4;
//              plain a.b.c.d is accepted too); default ::1
//   -p PORT    TCP target port (default 80; 0 only with -N: the local port)
//   -I IFNAME / -n ID   the target's scope id, by interface name or number
//   -u PATH    Unix stream target ('@' first: abstract namespace)
//   -N, -P PREFIX, -x   NAT64 mode (relay/target.h)
//   -i         send a PROXY protocol v1 header (to a TCP target only, as the
//              original; --proxy-to-unix sends it to a -u target too)
// --refuse-unix-clients closes a passed AF_UNIX connection (one with no
// client address: PROXY UNKNOWN / v2 LOCAL would make the target take the
// relay's own address for the client's) and counts it as unix_refused.
// Unlike the original, a bad number is an error naming the option, not a
// silent 0. As in the original, a bad -c or -P keeps the value before it and
// extra words after the options are ignored; both with a warning (in
// `warnings`, for main to print). New options have long names only. Each
// option is a row of the table in relay/options.cc, which also gives the
// usage text.
#ifndef SBX_RELAY_OPTIONS_H_
#define SBX_RELAY_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/core/address.h"
#include "relay/log.h"
#include "relay/proxy_header.h"
#include "relay/target.h"

namespace sbx::relay {

enum class SourceKind { kListener, kReceiver, kReceiverPath, kRegistration };
enum class CopyMode { kBuffer, kSplice };

struct RelayOptions {
  SourceKind source = SourceKind::kListener;
  int source_fd = 0;            // -l
  std::string receiver_path;    // -s, or --register's control socket
  uint32_t register_group = 0;  // --register
  TargetSpec target;
  ProxyVersion proxy = ProxyVersion::kNone;     // kNone for a Unix target without --proxy-to-unix
  bool proxy_to_unix = false;                   // --proxy-to-unix
  int workers = 1;                              // --workers: threads, one io_uring each
  uint32_t buffer_size = 256 * 1024;            // --buffer-size: bytes per direction
  CopyMode copy = CopyMode::kBuffer;            // --copy
  uint32_t connect_timeout_s = 10;              // --connect-timeout (0: none)
  uint32_t idle_timeout_s = 0;                  // --idle-timeout (0: none)
  uint32_t drain_timeout_s = 30;                // --drain-timeout: SIGTERM grace
  uint32_t max_connections = 0;                 // --max-connections per worker (0: none)
  int backlog = 4096;                           // --backlog, for -l without -e
  bool log_connections = true;                  // --quiet turns the per-connection line off
  LogFormat log_format = LogFormat::kOriginal;  // --log-format
  bool refuse_unix_clients = false;             // --refuse-unix-clients
  std::optional<SocketAddress> metrics_listen;  // --metrics-listen
  // Accepted, but worth a line on stderr: an ignored extra word, a bad -c/-P.
  std::vector<std::string> warnings;
};

absl::StatusOr<RelayOptions> ParseRelayOptions(int argc, char** argv);
std::string RelayUsage();

}  // namespace sbx::relay

#endif  // SBX_RELAY_OPTIONS_H_
