// Kernel dispatch, the receiver's side: asking the engine for the listening
// socket the kernel steers this backend's connections into
// (docs/kernel-dispatch.md).
//
// The request is a datagram to the engine's listener socket (a filesystem
// path, so it crosses network namespaces; `--listener-socket`, default
// kDefaultListenerSocket; receivers read SKBOX_LISTENER_SOCKET). It carries
// two fds:
//   1. the receiving socket itself, the datagram socket bound at the
//      backend's path: the engine gives the listener only to a holder of the
//      very socket its configuration sends to (it compares kernel identities,
//      so a path that reads differently inside a container still matches,
//      and no name can be forged);
//   2. one end of a SOCK_SEQPACKET socketpair: the channel. The answer comes
//      back on it, and it stays open for as long as the receiver lives; its
//      closing (every process holding it gone) tells the engine that the
//      listener is no longer served.
//
//   request (receiver -> engine, datagram, 16 bytes + an optional path hint)
//     bytes 0-3  'S' 'B' 'X' 'R'
//     byte  4    kind 3 (listener request)
//     byte  5    version 1
//     bytes 6-15 0
//     bytes 16-  the backend path as the receiver knows it (optional; the
//                engine looks there first)
//   answer (engine -> receiver, on the channel, 16 bytes)
//     bytes 0-3  'S' 'B' 'X' 'R'
//     byte  4    kind 4 (listener)
//     byte  5    version 1
//     bytes 6-7  0
//     bytes 8-11 status, big-endian: 0 = the listener is attached
//                (SCM_RIGHTS); else an errno value saying why not
//     bytes 12-15 0
//
// A receiver that never asks gets exactly what it got before. A receiver
// that is refused, or finds no engine, keeps its datagram socket and gets
// connections over it as before.
//
// Free of abseil and exceptions: the preload library uses it too.
#ifndef SBX_ENGINE_CORE_LISTENER_REQUEST_H_
#define SBX_ENGINE_CORE_LISTENER_REQUEST_H_

#include <cstddef>
#include <cstdint>

#include "engine/sys/sys_result.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

inline constexpr char kDefaultListenerSocket[] = "/run/socketbox/listeners.sock";
inline constexpr char kListenerSocketEnv[] = "SKBOX_LISTENER_SOCKET";
inline constexpr size_t kListenerMessageBytes = 16;
inline constexpr uint8_t kListenerRequestKind = 3;
inline constexpr uint8_t kListenerAnswerKind = 4;

void EncodeListenerRequest(unsigned char out[kListenerMessageBytes]);
bool IsListenerRequest(const unsigned char* data, size_t len);
void EncodeListenerAnswer(uint32_t status, unsigned char out[kListenerMessageBytes]);
// False unless `data` is exactly a well-formed answer.
bool DecodeListenerAnswer(const unsigned char* data, size_t len, uint32_t* status);

struct TakenListener {
  UniqueFd listener;  // a TCP listening socket in the engine's namespace
  UniqueFd channel;   // keep it open while the listener is served
};

// The path the engine's listener socket is at: SKBOX_LISTENER_SOCKET if set
// and not empty, else kDefaultListenerSocket.
const char* ListenerSocketPath();

// Asks the engine at `engine_path` for the listener of the backend whose
// datagram socket is `receiving_socket` (bound at the backend's path;
// `path_hint` may be null). Waits up to `timeout_ms` in all, for room in
// the engine's socket (a flood of others' requests delays, not fails, this
// one) and for the answer.
// Errors: ENOENT / ECONNREFUSED (no engine there), ETIMEDOUT, EPROTO (a
// malformed answer), or the status the engine answered (EPERM: this socket
// is not one the configuration sends to, or the sender is neither root nor
// the owner of the socket file; EAGAIN: ask again in a moment, the engine is
// busy with other requests). An engine with kernel dispatch off serves no
// listener socket (ENOENT, ECONNREFUSED). All fds are CLOEXEC.
SysResult<TakenListener> RequestListener(int receiving_socket, const char* engine_path,
                                         const char* path_hint, int timeout_ms);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_LISTENER_REQUEST_H_
