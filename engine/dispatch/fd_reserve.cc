#include "engine/dispatch/fd_reserve.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>

namespace sbx {
namespace {

int OpenPlaceholder() { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }

}  // namespace

FdReserve::FdReserve(int count) : count_(count) { Refill(); }

int FdReserve::Open(const std::function<int()>& open) {
  const int fd = open();
  if (fd >= 0 || (errno != EMFILE && errno != ENFILE)) return fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (held_.empty()) {
      errno = EMFILE;
      return -1;
    }
    held_.pop_back();
    held_count_.store(static_cast<int>(held_.size()), std::memory_order_relaxed);
  }
  return open();
}

void FdReserve::Refill() {
  if (held() >= count_) return;
  std::lock_guard<std::mutex> lock(mu_);
  while (static_cast<int>(held_.size()) < count_) {
    UniqueFd fd(OpenPlaceholder());
    if (!fd) break;  // still short: try again later
    held_.push_back(std::move(fd));
  }
  held_count_.store(static_cast<int>(held_.size()), std::memory_order_relaxed);
}

int ReserveFor(uint64_t limit) { return static_cast<int>(std::clamp<uint64_t>(limit / 8, 4, 32)); }

}  // namespace sbx
