// Command line of bench/sink: where sockets come from and which backend name
// (the greeting) each source stands for.
//
//   --backend NAME=PATH            receive by the "A" protocol on a datagram
//                                  socket bound at PATH (mode 0666; a stale
//                                  socket file is replaced)
//   --register NAME=GROUP:CTLPATH  register as GROUP on the SOCK_SEQPACKET
//                                  control socket CTLPATH and receive there
//   --listen NAME=[ADDR]:PORT      accept TCP directly (the "direct" scenario)
//   --threads N                    worker threads, one io_uring each (1)
//   --lifetime S                   exit by itself after S seconds (600)
//   --recv-depth N                 RECVMSGs posted per channel per thread (1)
//   --max-fds N                    on --backend sockets, declare (receiver
//                                  protocol hello) that a message may carry
//                                  up to N fds (1..64; 1, the default: no
//                                  hello, one fd per message as ever)
//   --ack                          on --backend sockets, declare acks and
//                                  acknowledge every message
//   --take-listener                kernel dispatch: for each --backend socket,
//                                  ask the engine for the listener its
//                                  connections are steered into and accept
//                                  from it too (the socket keeps receiving);
//                                  refused or no engine: the socket alone
//   --listener-socket PATH         where the engine takes those requests
//                                  ($SKBOX_LISTENER_SOCKET, else
//                                  /run/socketbox/listeners.sock)
#ifndef SBX_BENCH_SINK_SINK_OPTIONS_H_
#define SBX_BENCH_SINK_SINK_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/core/address.h"

namespace sbx::bench {

struct SinkSource {
  enum class Kind { kDatagram, kRegister, kListen };
  Kind kind = Kind::kDatagram;
  std::string name;  // the greeting bytes
  std::string path;  // kDatagram: socket path; kRegister: control socket path
  uint32_t group = 0;
  SocketAddress address;  // kListen
};

struct SinkOptions {
  std::vector<SinkSource> sources;
  unsigned threads = 1;
  double lifetime_s = 600;
  unsigned recv_depth = 1;
  unsigned max_fds = 1;         // --max-fds
  bool ack = false;             // --ack
  bool take_listener = false;   // --take-listener
  std::string listener_socket;  // --listener-socket; empty: ListenerSocketPath()
};

// The options, or nullopt after printing a message naming the bad argument
// (or the usage, for --help: then `*exit_code` is 0).
std::optional<SinkOptions> ParseSinkOptions(int argc, char** argv, int* exit_code);

}  // namespace sbx::bench

#endif  // SBX_BENCH_SINK_SINK_OPTIONS_H_
