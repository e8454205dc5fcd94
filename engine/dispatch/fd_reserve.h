// The daemon's fd budget. Accepted connections share RLIMIT_NOFILE with the
// sockets the daemon opens for itself (a backend's datagram socket, the
// configuration file on reload, a metrics client). Accepting cannot be
// bounded from user space: one multishot accept takes every queued
// connection there is an fd for. So a few fds are held in reserve as
// placeholders on /dev/null: when the daemon's own open fails with EMFILE,
// one placeholder is closed and the open tried again. The kernel itself
// then keeps accepts from taking the last fds, and a full fd table slows
// accepting (EMFILE on accept, the listener pauses briefly) instead of
// making healthy backends look dead.
#ifndef SBX_ENGINE_DISPATCH_FD_RESERVE_H_
#define SBX_ENGINE_DISPATCH_FD_RESERVE_H_

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "engine/sys/fd_table.h"           // RaiseFdLimit, for its users
#include "engine/sys/resource_shortage.h"  // IsResourceShortage, for its users
#include "engine/sys/unique_fd.h"

namespace sbx {

class FdReserve {
 public:
  // Holds `count` placeholders (fewer if fds are short already).
  explicit FdReserve(int count);

  // Runs `open` (an fd, or -1 with errno set); on EMFILE or ENFILE gives up
  // one placeholder and runs it once more. Thread-safe.
  int Open(const std::function<int()>& open);
  // Takes back placeholders given up earlier, while fds are free.
  void Refill();
  int held() const { return held_count_.load(std::memory_order_relaxed); }
  int wanted() const { return count_; }

 private:
  std::mutex mu_;
  std::vector<UniqueFd> held_;
  std::atomic<int> held_count_{0};
  int count_;
};

// The reserve for a limit: 1/8 of it, between 4 and 32 fds.
int ReserveFor(uint64_t limit);

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_FD_RESERVE_H_
