#include "engine/sys/background_closer.h"

namespace sbx {

void BackgroundCloser::Start() {
  thread_ = std::thread([this] { Run(); });
}

BackgroundCloser::~BackgroundCloser() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void BackgroundCloser::Close(UniqueFd fd) {
  if (!fd) return;
  if (!thread_.joinable()) return;  // not started: `fd` closes here
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(fd));
  }
  wake_.notify_one();
}

size_t BackgroundCloser::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

void BackgroundCloser::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    UniqueFd fd = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    fd.Reset();  // may block: not under the lock
    lock.lock();
  }
}

}  // namespace sbx
