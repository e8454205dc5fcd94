// State shared between the main thread and the workers: the current route
// table (swapped whole on reload), the stop flag, the exit status, and a
// wake-up eventfd per worker. The main thread publishes tables and requests
// the stop; workers read those between loop turns. The exit status is the
// one thing a worker writes (RequestExit: the first status recorded wins).
#ifndef SBX_ENGINE_DISPATCH_CONTROL_H_
#define SBX_ENGINE_DISPATCH_CONTROL_H_

#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/core/route_table.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

// Workers ask the main thread to end the daemon with this signal.
inline constexpr int kWorkerExitSignal = SIGUSR2;

class Control {
 public:
  explicit Control(int workers) : not_accepting_(static_cast<size_t>(workers), false) {
    for (int i = 0; i < workers; ++i) {
      wake_.emplace_back(::eventfd(0, EFD_CLOEXEC));
    }
  }

  void Publish(std::shared_ptr<const RouteTable> table) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      table_ = std::move(table);
    }
    generation_.fetch_add(1, std::memory_order_release);
    WakeAll();
  }
  std::shared_ptr<const RouteTable> Current() const {
    std::lock_guard<std::mutex> lock(mu_);
    return table_;
  }
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  void RequestStop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::fill(not_accepting_.begin(), not_accepting_.end(), false);
    }
    stopping_.store(true, std::memory_order_release);
    WakeAll();
  }
  // A worker that saw the stop says, once nothing it armed can accept any
  // more, that it accepts nothing (its drain of what it holds goes on). A
  // handover's successor may then accept: it need not wait for the drain,
  // which acknowledging backends can make last up to --dispatch-timeout.
  void StoppedAccepting(int worker) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      not_accepting_[static_cast<size_t>(worker)] = true;
    }
    accepting_cv_.notify_all();
  }
  // Until every worker has said so, or `timeout` passed: false then.
  bool WaitStoppedAccepting(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return accepting_cv_.wait_for(lock, timeout, [this] {
      return std::all_of(not_accepting_.begin(), not_accepting_.end(), [](bool b) { return b; });
    });
  }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  // After the workers that saw the stop have ended: new ones may run (a
  // daemon takes its listeners back from a successor that died).
  void Resume() { stopping_.store(false, std::memory_order_release); }

  // A worker that cannot go on (registration server gone, -i peer closed)
  // records the exit status and signals the main thread.
  void RequestExit(int status) {
    int expected = -1;
    exit_status_.compare_exchange_strong(expected, status);
    ::kill(::getpid(), kWorkerExitSignal);
  }
  int exit_status() const { return exit_status_.load(); }

  int wake_fd(int worker) const { return wake_[worker].get(); }

 private:
  void WakeAll() {
    for (const UniqueFd& fd : wake_) {
      const uint64_t one = 1;
      (void)!::write(fd.get(), &one, sizeof(one));
    }
  }

  mutable std::mutex mu_;
  std::shared_ptr<const RouteTable> table_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
  std::vector<bool> not_accepting_;  // per worker, since the last RequestStop (under mu_)
  std::condition_variable accepting_cv_;
  std::atomic<int> exit_status_{-1};
  std::vector<UniqueFd> wake_;
};

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_CONTROL_H_
