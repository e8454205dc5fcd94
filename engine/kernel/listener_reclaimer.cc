#include "engine/kernel/listener_reclaimer.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <vector>

#include "engine/core/fd_passing.h"
#include "engine/core/unix_address.h"

namespace sbx {
namespace {

constexpr std::chrono::milliseconds kRetry{10};   // a backend not bound, or full
constexpr std::chrono::milliseconds kQuiet{200};  // nothing more arrives: the job ends

int MillisUntil(std::chrono::steady_clock::time_point t) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(t - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<int64_t>(left.count(), 0));
}

}  // namespace

void ListenerReclaimer::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  started_ = true;
  while (!waiting_.empty()) {
    Launch(std::move(waiting_.front()));
    waiting_.pop_front();
  }
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
  for (auto it = running_.begin(); it != running_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread thread([this, job = std::move(job), done]() mutable {
    Serve(job);
    done->store(true);
  });
  running_.push_back({std::move(thread), std::move(done)});
}

void ListenerReclaimer::Stop() {
  std::deque<Running> running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    waiting_.clear();
    running.swap(running_);
  }
  for (Running& r : running) r.thread.join();  // each by its job's deadline
}

void ListenerReclaimer::Serve(Job& job) {
  // The listener's open file description is shared with every receiver
  // that held it; one that accepted blocking cleared O_NONBLOCK. Those
  // receivers are gone: the engine sets it back, or an accept on an empty
  // queue would block this thread for good.
  const int fd = job.listener.get();
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  // Connections the kernel assigned just before the listener left the map
  // still complete their handshake: the job ends after a quiet spell.
  Clock::time_point quiet_until = Clock::now() + kQuiet;
  while (!job.cancelled->load()) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, MillisUntil(quiet_until)) < 0 && errno != EINTR) return;
    if (job.cancelled->load()) return;
    if ((p.revents & POLLIN) == 0) {
      if ((p.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) return;  // shut down: nothing queued
      if (Clock::now() >= quiet_until) return;
      continue;
    }
    UniqueFd conn(::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      return;  // EINVAL: no longer listening
    }
    // Each connection waits for its backend up to the job's deadline.
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
