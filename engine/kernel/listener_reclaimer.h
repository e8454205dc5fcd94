// What the engine does with a steering listener nobody serves any more
// (kernel dispatch, listener_registry.h): once it is out of the kernel's map,
// the connections queued in it (and any the kernel had assigned to it just
// before) are accepted and sent to the backend's path the classic way, one
// fd per datagram, each waiting for the backend as the engine's own path
// waits: for room in a full queue, or for a receiver to bind the path, up to
// --dispatch-timeout from the moment it was taken back. Then it is closed and
// counted.
//
// The deadline is the job's, set when the listener is taken back: every
// connection of the job shares it (one waiting for a receiver that never
// comes must not push the next one's wait further, or eight queued
// connections would take eight timeouts). Each job has a thread of its own:
// one backend whose receiver stays away must not hold back another's
// reclaim. A job ends when its listener has been quiet for 200 ms, when it
// is cancelled (a receiver took the listener again: what is still queued
// is that receiver's), or at its deadline, when what is queued then is
// closed and counted; the reclaimer's Stop waits for that. At most 64 jobs
// run at once; more wait for a thread, their deadlines running.
#ifndef SBX_ENGINE_KERNEL_LISTENER_RECLAIMER_H_
#define SBX_ENGINE_KERNEL_LISTENER_RECLAIMER_H_

#include <atomic>
#include <chrono>
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
  // Allows threads (after any fork: see BackgroundCloser::Start); jobs
  // given before start then.
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
  using Clock = std::chrono::steady_clock;
  struct Job {
    std::string path;
    UniqueFd listener;
    std::shared_ptr<std::atomic<bool>> cancelled;
    Clock::time_point deadline;
  };
  struct Running {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };

  // Under mu_: a thread for `job` (or a place in waiting_ past the cap);
  // joins those that have ended.
  void Launch(Job job);
  // A thread's life: `job`, then any that wait for a thread.
  void RunJobs(Job job);
  void Serve(Job& job);
  // Sends `conn` to `path` by `deadline`; false when it could not.
  bool SendBy(const std::string& path, int conn, Clock::time_point deadline);

  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::deque<Job> waiting_;  // given before Start, or past the cap of threads
  bool started_ = false;
  bool stop_ = false;
  std::deque<Running> running_;
  std::atomic<uint64_t> reclaimed_{0}, failed_{0};
};

}  // namespace sbx

#endif  // SBX_ENGINE_KERNEL_LISTENER_RECLAIMER_H_
