// The receiver protocol's bookkeeping (engine/core/receiver_protocol.h) of
// each receiving socket on which the preload's accept() acknowledges
// (SKBOX_ACKNOWLEDGE=1): one SenderReplies per socket, shared by every
// thread that calls accept() on it, used only with the table's mutex held
// (ReceiveOptions::replies_mutex), so hellos and ack counts stay exact.
//
// The preload always declares max_fds 1: a program that waits for the
// receiving socket to be readable (epoll) before calling accept() would
// never be woken for fds stashed from a several-fd message.
//
// Keyed by fd and checked against the socket's inode, as the listener table
// is (the preload does not see close()): a stale entry is reused. Fixed
// capacity, static storage; a socket that finds the table full of live
// sockets is served without the protocol (no hello: the engine then sends
// it one fd per message and expects no acks). Fork-safe (pthread_atfork).
#ifndef SBX_PRELOAD_REPLIES_TABLE_H_
#define SBX_PRELOAD_REPLIES_TABLE_H_

#include <pthread.h>

#include "engine/core/receiver_protocol.h"

namespace sbx::preload {

struct SharedReplies {
  SenderReplies* replies = nullptr;  // null: table full, or `fd` not a socket
  pthread_mutex_t* mutex = nullptr;
};

// What the preload declares.
inline constexpr ReceiverCapabilities kPreloadCapabilities{1, true};

// The entry of the receiving socket `fd`, made on first use; its answers
// that the sender cannot take go to `relay` (SenderReplies::set_relay; -1:
// none). errno is left as it was.
SharedReplies RepliesFor(int fd, int relay = -1);

// Registers the pthread_atfork handlers (once, at load).
void InstallRepliesTableForkHandlers();

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_REPLIES_TABLE_H_
