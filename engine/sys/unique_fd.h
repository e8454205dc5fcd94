// UniqueFd: sole owner of one file descriptor; closes it on destruction.
//
// Move-only. A default-constructed or released UniqueFd holds -1 and closes
// nothing. Used where an fd crosses a function boundary so that ownership is
// visible in the signature (UniqueFd&& takes it, int borrows it), with one
// exception: an accepted connection on the engine's hot path is a bare int
// that its holder owns (WorkerBase::TakeConnection, DispatchScheduler's
// slots, the transports' CloseConnection), because the kernel, not a
// destructor, closes it after a successful send (the IORING_OP_CLOSE linked
// to it): a UniqueFd there would close it twice. The functions that take
// such an int say so.
// Free of abseil and exceptions: the preload library links it too.
#ifndef SBX_ENGINE_SYS_UNIQUE_FD_H_
#define SBX_ENGINE_SYS_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace sbx {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  int Release() { return std::exchange(fd_, -1); }

  // Closes the held fd (if any) and takes `fd`. close(2) errors are ignored on
  // purpose: on Linux the fd is gone either way, and retrying would be a bug.
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_UNIQUE_FD_H_
