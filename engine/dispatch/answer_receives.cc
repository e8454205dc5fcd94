#include "engine/dispatch/answer_receives.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <iterator>

#include "engine/dispatch/uring_ops.h"

namespace sbx {
namespace {

// Answers read from one receiver per completion of its RECV (OnCompletion).
constexpr int kAnswersPerTurn = 64;
// An honest receiver answers at most twice per message it was sent (a
// hello from the process that took it, and an ack). One that sent this many
// more than twice the fds it was sent floods: its answers are read
// kAnswersPerTurn at a time, once per kFloodPauseNs, and the rest wait in
// its own socket (charged to its own send buffer, so its sends fail).
constexpr uint64_t kAnswerSlack = 64;
constexpr uint64_t kFloodPauseNs = 10'000'000;

// Anything that is not a message of the protocol (garbage, an empty
// datagram) is ignored.
bool Decode(const unsigned char* data, ssize_t len, ReceiverMessage* message) {
  return len > 0 && DecodeReceiverMessage(data, static_cast<size_t>(len), message);
}

}  // namespace

struct AnswerReceives::Receive {
  Backend* backend = nullptr;
  int fd = -1;                // the socket it listens on (a reconnect makes a new one)
  uint64_t resume_at_ns = 0;  // paused (not armed) until then: its receiver floods
  unsigned char buffer[kReceiverMessageBytes + 1]{};  // one more: oversized is garbage
};

AnswerReceives::AnswerReceives(WorkerRing* ring, DispatchScheduler* scheduler,
                               BackendTable* backends, ReplyRelay* relay, int worker)
    : ring_(ring), scheduler_(scheduler), backends_(backends), relay_(relay), worker_(worker) {}

AnswerReceives::~AnswerReceives() = default;  // where Receive is complete

void AnswerReceives::Listen(Backend* b) {
  if (b->path.empty() || b->substituted || !b->socket) return;
  auto it = listening_.find(b);
  if (it != listening_.end()) {
    if (it->second->fd == b->fd()) return;
    // A receive left on an old socket (it would keep that socket open).
    Discard(it->second);
    listening_.erase(it);
  }
  ring_->EnsureRoom(2);
  auto owned = std::make_unique<Receive>();
  Receive* r = owned.get();
  r->backend = b;
  r->fd = b->fd();
  receives_.emplace(r, std::move(owned));
  listening_[b] = r;
  Arm(r);
}

void AnswerReceives::Arm(Receive* r) {
  io_uring_sqe* sqe = ring_->Get();
  io_uring_prep_recv(sqe, r->fd, r->buffer, sizeof(r->buffer), 0);
  io_uring_sqe_set_data64(sqe, UringTag(UringOp::kAnswer, r));
}

void AnswerReceives::Apply(Backend* b, const unsigned char* data, ssize_t len) {
  ReceiverMessage message;
  if (Decode(data, len, &message)) scheduler_->OnReceiverMessage(b, message);
}

void AnswerReceives::OnCompletion(uint64_t user_data, int res, uint64_t now) {
  Receive* r = UserDataPointer<Receive>(user_data);
  auto it = listening_.find(r->backend);
  const bool current = it != listening_.end() && it->second == r;
  ReceiverState& state = r->backend->receiver;
  if (current) {
    if (res >= 0) ++state.answers;
    Apply(r->backend, r->buffer, res);
    // What else is queued is read now, up to a bound: one enter per batch
    // of answers, not per answer (a receiver flooding acks or empty
    // datagrams cost one io_uring_enter each), and a flood waits in its own
    // socket past the bound instead of taking the turn.
    if (res >= 0) {
      unsigned char buffer[kReceiverMessageBytes + 1];
      for (int more = 1; more < kAnswersPerTurn; ++more) {
        const ssize_t n = ::recv(r->fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n < 0) break;
        ++state.answers;
        Apply(r->backend, buffer, n);
      }
    }
    if (res >= 0 && state.answers > 2 * state.fds_sent + kAnswerSlack) {
      r->resume_at_ns = now + kFloodPauseNs;
      paused_.push_back(r);
      return;
    }
  }
  // Still listening while stopping: held connections wait for their acks.
  if (current && (res >= 0 || res == -EAGAIN || res == -EINTR)) {
    Arm(r);
    return;
  }
  if (current) listening_.erase(it);
  receives_.erase(r);
}

void AnswerReceives::TakeRelayed() {
  if (relay_ == nullptr || !relay_->HasPending(worker_)) return;
  relay_->TakePending(worker_, &taken_);
  relayed_.insert(relayed_.end(), std::make_move_iterator(taken_.begin()),
                  std::make_move_iterator(taken_.end()));
}

// Each relayed answer counts only if this worker's socket for the channel's
// backend still has the name the receiver answered.
void AnswerReceives::ApplyRelayed() {
  TakeRelayed();
  for (const RelayedReply& r : relayed_) {
    Backend* b = backends_->Find(r.path);
    if (b != nullptr && !b->reply_name.empty() && b->reply_name == r.sender) {
      Apply(b, r.message, kReceiverMessageBytes);
    }
  }
  relayed_.clear();
}

void AnswerReceives::Finish(Backend* b, std::vector<ReceiverMessage>* out) {
  auto it = listening_.find(b);
  if (it == listening_.end()) return;
  Receive* r = it->second;
  ReceiverMessage message;
  // An answer its receive took but whose completion waits for the next turn
  // (posted by a submission made during this one); when that completion
  // comes, the receive is no longer current and it is dropped. Answers of
  // this turn's batch were handled before its sends.
  const uint64_t tag = UringTag(UringOp::kAnswer, r);
  ring_->ForEachLater([&](const io_uring_cqe* cqe) {
    if (cqe->user_data == tag && Decode(r->buffer, cqe->res, &message)) out->push_back(message);
  });
  // Relayed ones for b; those for other backends wait for ApplyRelayed.
  TakeRelayed();
  std::erase_if(relayed_, [&](const RelayedReply& relayed) {
    if (backends_->Find(relayed.path) != b) return false;
    if (!b->reply_name.empty() && b->reply_name == relayed.sender &&
        Decode(relayed.message, kReceiverMessageBytes, &message)) {
      out->push_back(message);
    }
    return true;
  });
  // Those still queued on the socket, before it is retired.
  unsigned char buffer[kReceiverMessageBytes + 1];
  ssize_t n;
  while ((n = ::recv(b->fd(), buffer, sizeof(buffer), MSG_DONTWAIT)) >= 0 || errno == EINTR) {
    if (Decode(buffer, n, &message)) out->push_back(message);
  }
  Discard(r);
  listening_.erase(it);
}

void AnswerReceives::Discard(Receive* r) {
  auto paused = std::find(paused_.begin(), paused_.end(), r);
  if (paused != paused_.end()) {
    paused_.erase(paused);
    receives_.erase(r);
    return;
  }
  io_uring_sqe* cancel = ring_->Get();
  io_uring_prep_cancel64(cancel, UringTag(UringOp::kAnswer, r), 0);
  io_uring_sqe_set_data64(cancel, UringTag(UringOp::kCancel, 0));
}

void AnswerReceives::ResumePaused(uint64_t now) {
  for (size_t i = 0; i < paused_.size();) {
    Receive* r = paused_[i];
    if (now < r->resume_at_ns) {
      ++i;
      continue;
    }
    paused_[i] = paused_.back();
    paused_.pop_back();
    Arm(r);
  }
}

uint64_t AnswerReceives::NextResume(uint64_t next) const {
  for (const Receive* r : paused_) next = std::min(next, r->resume_at_ns);
  return next;
}

}  // namespace sbx
