#include "engine/kernel/reply_relay.h"

#include <unistd.h>

#include <cstring>

namespace sbx {

ReplyRelay::ReplyRelay(std::vector<UniqueFd> wake_fds) {
  for (UniqueFd& fd : wake_fds) {
    queues_.push_back(std::make_unique<Queue>());
    queues_.back()->wake_fd = std::move(fd);
  }
}

void ReplyRelay::Name(int worker, std::string_view sender) {
  std::lock_guard<std::mutex> lock(names_mu_);
  worker_of_[std::string(sender)] = worker;
}

void ReplyRelay::Unname(std::string_view sender) {
  std::lock_guard<std::mutex> lock(names_mu_);
  worker_of_.erase(std::string(sender));
}

void ReplyRelay::TakePending(int worker, std::vector<RelayedReply>* out) {
  out->clear();
  Queue& q = *queues_[worker];
  std::lock_guard<std::mutex> lock(q.mu);
  out->swap(q.replies);
  q.size.store(0, std::memory_order_release);
}

bool ReplyRelay::HasRoom(size_t n) const {
  for (const auto& q : queues_) {
    if (q->size.load(std::memory_order_acquire) + n > kMaxPending) return false;
  }
  return true;
}

ReplyRelay::Delivery ReplyRelay::Deliver(std::string_view path, std::string_view sender,
                                         const unsigned char message[kReceiverMessageBytes]) {
  int worker;
  {
    std::lock_guard<std::mutex> lock(names_mu_);
    auto it = worker_of_.find(std::string(sender));
    if (it == worker_of_.end()) {
      // A socket since retired, or a name no worker of this daemon had
      // (a predecessor's, after an upgrade): nothing to count it against.
      unknown_.fetch_add(1, std::memory_order_relaxed);
      return Delivery::kUnknownSender;
    }
    worker = it->second;
  }
  Queue& q = *queues_[worker];
  bool was_empty;
  {
    std::lock_guard<std::mutex> lock(q.mu);
    if (q.replies.size() >= kMaxPending) return Delivery::kFull;
    was_empty = q.replies.empty();
    RelayedReply& r = q.replies.emplace_back();
    r.path = std::string(path);
    r.sender = std::string(sender);
    std::memcpy(r.message, message, kReceiverMessageBytes);
    q.size.store(q.replies.size(), std::memory_order_release);
  }
  relayed_.fetch_add(1, std::memory_order_relaxed);
  // One wake-up per batch: a worker that has not taken the queue yet will
  // find this answer with the others.
  if (was_empty) {
    const uint64_t one = 1;
    (void)!::write(q.wake_fd.get(), &one, sizeof one);
  }
  return Delivery::kQueued;
}

}  // namespace sbx
