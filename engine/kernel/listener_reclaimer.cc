#include "engine/kernel/listener_reclaimer.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <system_error>
#include <vector>

#include "engine/core/fd_passing.h"
#include "engine/core/unix_address.h"

namespace sbx {
namespace {

constexpr std::chrono::milliseconds kRetry{10};   // a backend not bound, or full
constexpr std::chrono::milliseconds kQuiet{200};  // nothing more arrives: the job ends
// Jobs served at once; more wait for one of these threads.
constexpr size_t kMaxThreads = 64;

int MillisUntil(std::chrono::steady_clock::time_point t) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(t - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<int64_t>(left.count(), 0));
}

}  // namespace

void ListenerReclaimer::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  started_ = true;
  std::deque<Job> given;
  given.swap(waiting_);
  for (Job& job : given) Launch(std::move(job));
}

ListenerReclaimer::~ListenerReclaimer() { Stop(); }

void ListenerReclaimer::Reclaim(std::string path, UniqueFd listener,
                                std::shared_ptr<std::atomic<bool>> cancelled) {
  Job job{std::move(path), std::move(listener), std::move(cancelled), Clock::now() + timeout_};
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_) return;  // closing: the listener goes with the engine
  if (!started_) {
    waiting_.push_back(std::move(job));
    return;
  }
  Launch(std::move(job));
}

void ListenerReclaimer::Launch(Job job) {
  size_t busy = 0;
  for (auto it = running_.begin(); it != running_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = running_.erase(it);
    } else {
      ++it;
      ++busy;
    }
  }
  // Past the cap (a reload that removed many backends at once), a job waits
  // for a thread to finish its own; its deadline runs meanwhile.
  if (busy >= kMaxThreads) {
    waiting_.push_back(std::move(job));
    return;
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  // Shared, so that a thread that cannot be made leaves the job here.
  auto shared = std::make_shared<Job>(std::move(job));
  try {
    std::thread thread([this, shared, done] {
      RunJobs(std::move(*shared));
      done->store(true);
    });
    running_.push_back({std::move(thread), std::move(done)});
  } catch (const std::system_error& e) {
    // No thread to be had (a pids limit): the job waits for one that ends,
    // or for the next reclaim to try again.
    std::fprintf(stderr, "socketbox: kernel dispatch: %s: taking back its listener waits (%s)\n",
                 shared->path.c_str(), e.what());
    waiting_.push_back(std::move(*shared));
  }
}

void ListenerReclaimer::RunJobs(Job job) {
  while (true) {
    Serve(job);
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ || waiting_.empty()) return;
    job = std::move(waiting_.front());
    waiting_.pop_front();
  }
}

void ListenerReclaimer::Stop() {
  std::deque<Running> running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    running.swap(running_);
  }
  // Each ends by its deadline (and the drain of what was queued then).
  for (Running& r : running) r.thread.join();
  std::lock_guard<std::mutex> lock(mu_);
  waiting_.clear();  // never started: their listeners close with the engine
}

void ListenerReclaimer::Serve(Job& job) {
  // The listener's open file description is shared with every receiver
  // that held it; one that accepted blocking cleared O_NONBLOCK. Those
  // receivers are gone: the engine sets it back, or an accept on an empty
  // queue would block this thread for good.
  const int fd = job.listener.get();
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  // Connections the kernel assigned just before the listener left the map
  // still complete their handshake: the job ends after a quiet spell, or
  // at its deadline with what is queued then closed and counted.
  Clock::time_point quiet_until = Clock::now() + kQuiet;
  while (!job.cancelled->load()) {
    const bool past_deadline = Clock::now() >= job.deadline;
    if (!past_deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, MillisUntil(std::min(quiet_until, job.deadline))) < 0 && errno != EINTR) {
        return;
      }
      if (job.cancelled->load()) return;
      if ((p.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) return;  // shut down: nothing queued
      if ((p.revents & POLLIN) == 0) {
        if (Clock::now() >= quiet_until) return;
        continue;
      }
    }
    UniqueFd conn(::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN && !past_deadline) continue;
      return;  // drained past the deadline, or EINVAL: no longer listening
    }
    // Each connection waits for its backend up to the job's deadline; past
    // it (or with --dispatch-timeout 0), it gets one try.
    if (SendBy(job.path, conn.get(), job.deadline)) {
      reclaimed_.fetch_add(1, std::memory_order_relaxed);
    } else {
      failed_.fetch_add(1, std::memory_order_relaxed);
    }
    quiet_until = Clock::now() + kQuiet;
  }
}

bool ListenerReclaimer::SendBy(const std::string& path, int conn, Clock::time_point deadline) {
  SysResult<UnixAddress> address = MakeUnixAddress(path);
  if (!address.ok()) return false;
  while (true) {
    UniqueFd sender(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!sender) return false;
    if (::connect(sender.get(), address->sockaddr_ptr(), address->len) == 0) {
      while (true) {
        const SysStatus sent = SendFd(sender.get(), conn, MSG_DONTWAIT);
        if (sent.ok()) return true;
        if (sent.error() != EAGAIN) break;  // the receiver went: connect again
        // A full queue: wait for room, as the engine's own path does.
        pollfd p{sender.get(), POLLOUT, 0};
        if (MillisUntil(deadline) == 0) return false;
        ::poll(&p, 1, MillisUntil(deadline));
      }
    }
    // Nobody bound there (yet): try again until the deadline.
    if (MillisUntil(deadline) == 0) return false;
    pollfd none{-1, 0, 0};
    ::poll(&none, 1, std::min(MillisUntil(deadline), static_cast<int>(kRetry.count())));
  }
}

}  // namespace sbx
