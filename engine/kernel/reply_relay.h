// Hellos and acks from receivers the engine's sending sockets cannot hear.
//
// A worker's sending socket is autobound: its name is abstract, and an
// abstract name exists only in the network namespace it was bound in. A
// receiver in another namespace (a container) gets ECONNREFUSED when it
// answers that name. If it holds a kernel dispatch channel (a SOCK_SEQPACKET
// socketpair end it got from the listener socket, which has no address and
// so crosses namespaces), it sends the answer there instead, with the name
// it could not reach (listener_request.h, "relayed reply"). The listener
// registry reads the channel and hands the answer here; this relay finds the
// worker whose socket has that name and queues the answer for it, and the
// worker applies it as if its own socket had read it.
//
// An answer counts only for the backend the channel was granted for: the
// registry names the path, not the receiver, and the worker checks that its
// socket for that path has that name. So a receiver can answer only for its
// own backend, as on the direct way (where its sending socket is connected
// to the backend's path and takes nothing from anyone else).
//
// Bounded: at most kMaxPending answers wait per worker; the registry asks
// HasRoom before it reads a channel, so a full queue delays reading (the
// receiver's channel fills, and its SenderReplies folds the counts into its
// next ack) instead of dropping anything.
#ifndef SBX_ENGINE_KERNEL_REPLY_RELAY_H_
#define SBX_ENGINE_KERNEL_REPLY_RELAY_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/core/receiver_protocol.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

struct RelayedReply {
  std::string path;    // the backend the channel was granted for
  std::string sender;  // the sending socket's name (sun_path bytes)
  unsigned char message[kReceiverMessageBytes];
};

class ReplyRelay {
 public:
  static constexpr size_t kMaxPending = 4096;  // per worker

  // `wake_fds[i]` wakes worker i (its wake-up eventfd, duplicated: the
  // relay may outlive the workers' own).
  explicit ReplyRelay(std::vector<UniqueFd> wake_fds);

  // The workers' side. A sending socket of `worker` got `sender` as its
  // name; Unname when the socket is retired.
  void Name(int worker, std::string_view sender);
  void Unname(std::string_view sender);
  // Cheap enough to ask every turn.
  bool HasPending(int worker) const {
    return queues_[worker]->size.load(std::memory_order_acquire) > 0;
  }
  // Moves the worker's queued answers into `out` (cleared first).
  void TakePending(int worker, std::vector<RelayedReply>* out);

  // The registry's side (one thread). Whether `n` more answers fit in every
  // worker's queue.
  bool HasRoom(size_t n) const;
  enum class Delivery { kQueued, kUnknownSender, kFull };
  Delivery Deliver(std::string_view path, std::string_view sender,
                   const unsigned char message[kReceiverMessageBytes]);

  uint64_t relayed() const { return relayed_.load(std::memory_order_relaxed); }
  uint64_t unknown() const { return unknown_.load(std::memory_order_relaxed); }

 private:
  struct Queue {
    std::mutex mu;
    std::vector<RelayedReply> replies;
    std::atomic<size_t> size{0};
    UniqueFd wake_fd;
  };
  std::vector<std::unique_ptr<Queue>> queues_;
  mutable std::mutex names_mu_;
  absl::flat_hash_map<std::string, int> worker_of_;  // sending socket name -> worker
  std::atomic<uint64_t> relayed_{0}, unknown_{0};
};

}  // namespace sbx

#endif  // SBX_ENGINE_KERNEL_REPLY_RELAY_H_
