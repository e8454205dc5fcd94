#include "engine/sys/background_closer.h"

namespace sbx {

BackgroundCloser::BackgroundCloser() : thread_([this] { Run(); }) {}

BackgroundCloser::~BackgroundCloser() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void BackgroundCloser::Close(UniqueFd fd) {
  if (!fd) return;
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
