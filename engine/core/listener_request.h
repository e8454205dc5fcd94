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
//     bytes 6-7  0
//     bytes 8-11 flags, big-endian: bit 0 = the channel alone, no listener
//                (kRequestReplyChannelOnly); other bits 0
//     bytes 12-15 0
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
//   relayed reply (receiver -> engine, on the channel, 17..124 bytes)
//     bytes 0-15 a hello or an ack (receiver_protocol.h), as it would have
//                gone to the sender directly
//     bytes 16-  the sender's name as msg_name gave it, without the family
//                (sun_path bytes; the engine's are abstract: a 0 first)
//   A receiver sends it when the direct answer fails with ECONNREFUSED: the
//   sender's abstract name does not exist in the receiver's network
//   namespace. The engine counts it for the backend the channel was granted
//   for, and only if that backend's sending socket has that name
//   (engine/kernel/reply_relay.h). Nothing comes back.
//
// A channel alone (flag bit 0): for a receiver that takes no listener but
// answers across namespaces. Authenticated the same way; the answer carries
// no fd; the channel's closing changes nothing for the backend's listener.
//
// A receiver that never asks gets exactly what it got before. A receiver
// that is refused, or finds no engine, keeps its datagram socket and gets
// connections over it as before.
//
// Free of abseil and exceptions: the preload library uses it too.
#ifndef SBX_ENGINE_CORE_LISTENER_REQUEST_H_
#define SBX_ENGINE_CORE_LISTENER_REQUEST_H_

#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/core/receiver_protocol.h"
#include "engine/sys/sys_result.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

inline constexpr char kDefaultListenerSocket[] = "/run/socketbox/listeners.sock";
inline constexpr char kListenerSocketEnv[] = "SKBOX_LISTENER_SOCKET";
inline constexpr size_t kListenerMessageBytes = 16;
inline constexpr uint8_t kListenerRequestKind = 3;
inline constexpr uint8_t kListenerAnswerKind = 4;

inline constexpr uint32_t kRequestReplyChannelOnly = 1;
inline constexpr size_t kRelayedReplyMaxBytes =
    kReceiverMessageBytes + sizeof(sockaddr_un::sun_path);

void EncodeListenerRequest(uint32_t flags, unsigned char out[kListenerMessageBytes]);
// False unless `data` starts with a well-formed request; sets `flags`.
bool IsListenerRequest(const unsigned char* data, size_t len, uint32_t* flags);
// 0 when `to` has no name (a relayed reply needs one).
size_t EncodeRelayedReply(const unsigned char reply[kReceiverMessageBytes], const sockaddr_un& to,
                          socklen_t to_len, unsigned char out[kRelayedReplyMaxBytes]);
// False unless `data` is a well-formed hello or ack followed by 1..108
// bytes of name; `sender` points into `data`.
bool DecodeRelayedReply(const unsigned char* data, size_t len, ReceiverMessage* reply,
                        std::string_view* sender);
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
// The channel alone (kRequestReplyChannelOnly), with the same errors; for
// SenderReplies::set_relay.
SysResult<UniqueFd> RequestReplyChannel(int receiving_socket, const char* engine_path,
                                        const char* path_hint, int timeout_ms);

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_LISTENER_REQUEST_H_
