// What the engine does with a steering listener nobody serves any more
// (kernel dispatch, listener_registry.h): once it is out of the kernel's map,
// the connections queued in it (and any the kernel had assigned to it just
// before) are accepted and sent to the backend's path the classic way, one
// fd per datagram, each waiting for the backend as the engine's own path
// waits: for room in a full queue, or for a receiver to bind the path, up to
// --dispatch-timeout from the moment it was taken back. Then it is closed and
// counted.
//
// One thread, jobs in order. A job ends when its listener has been quiet
// for 200 ms, when it is cancelled (a receiver took the listener
// again: what is still queued is that receiver's), or when the reclaimer
// stops (its deadline then is the caller's to bound).
#ifndef SBX_ENGINE_KERNEL_LISTENER_RECLAIMER_H_
#define SBX_ENGINE_KERNEL_LISTENER_RECLAIMER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "engine/sys/unique_fd.h"

namespace sbx {

class ListenerReclaimer {
 public:
  explicit ListenerReclaimer(std::chrono::milliseconds timeout) : timeout_(timeout) {}
  ~ListenerReclaimer();  // Stop()
  // Starts the thread (after any fork: see BackgroundCloser::Start); jobs
  // given before wait for it.
  void Start();
  ListenerReclaimer(const ListenerReclaimer&) = delete;
  ListenerReclaimer& operator=(const ListenerReclaimer&) = delete;

  // Takes back what `listener` (a dup of it) holds, for `path`. Setting
  // `*cancelled` ends the job before its next accept.
  void Reclaim(std::string path, UniqueFd listener, std::shared_ptr<std::atomic<bool>> cancelled);

  // Finishes the jobs given so far (each bounded by the timeout), then ends.
  void Stop();

  uint64_t reclaimed() const { return reclaimed_.load(std::memory_order_relaxed); }
  uint64_t failed() const { return failed_.load(std::memory_order_relaxed); }

 private:
  struct Job {
    std::string path;
    UniqueFd listener;
    std::shared_ptr<std::atomic<bool>> cancelled;
  };
  using Clock = std::chrono::steady_clock;

  void Run();
  void Serve(Job& job);
  // Sends `conn` to `path` by `deadline`; false when it could not.
  bool SendBy(const std::string& path, int conn, Clock::time_point deadline);

  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;
  bool stop_ = false;
  std::atomic<uint64_t> reclaimed_{0}, failed_{0};
  std::thread thread_;
};

}  // namespace sbx

#endif  // SBX_ENGINE_KERNEL_LISTENER_RECLAIMER_H_
