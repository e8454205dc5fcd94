// Closes fds on a thread of its own. close(2) can block: a TCP socket with
// SO_LINGER and unsent data waits out its linger time, a FUSE file waits for
// its server. A thread that serves untrusted peers closes what they sent it
// here, so that no peer can stall it by sending such an fd.
#ifndef SBX_ENGINE_SYS_BACKGROUND_CLOSER_H_
#define SBX_ENGINE_SYS_BACKGROUND_CLOSER_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <thread>

#include "engine/sys/unique_fd.h"

namespace sbx {

class BackgroundCloser {
 public:
  BackgroundCloser() = default;
  ~BackgroundCloser();  // closes what is left, then joins
  // Starts the thread: not in the constructor, so that an owner made
  // before a fork (daemon()) gets its thread in the process that uses it.
  // Until then Close() closes at once.
  void Start();
  BackgroundCloser(const BackgroundCloser&) = delete;
  BackgroundCloser& operator=(const BackgroundCloser&) = delete;

  void Close(UniqueFd fd);
  // Fds given and not closed yet: a caller that reads from peers stops
  // reading while this is high, so that the queue (and the fds it holds)
  // stays bounded.
  size_t pending() const;

 private:
  void Run();

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<UniqueFd> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_BACKGROUND_CLOSER_H_
