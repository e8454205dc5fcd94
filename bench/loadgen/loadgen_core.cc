#include "bench/loadgen/loadgen_core.h"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

namespace sbx::bench {

uint64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

const char* OutcomeName(Outcome outcome) {
  static constexpr const char* kNames[] = {"ok",      "wrong_greeting", "refused", "reset",
                                           "timeout", "no_greeting",    "local",   "other"};
  return kNames[static_cast<int>(outcome)];
}

Outcome OutcomeOfErrno(int err) {
  switch (err) {
    case ECONNREFUSED:
      return Outcome::kRefused;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
      return Outcome::kReset;
    case ETIMEDOUT:
      return Outcome::kTimeout;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case EADDRNOTAVAIL:
      return Outcome::kLocal;
    default:
      return Outcome::kOther;
  }
}

void ThreadStats::Merge(const ThreadStats& other) {
  latency.Merge(other.latency);
  slowest.Merge(other.slowest);
  for (size_t i = 0; i < outcomes.size(); ++i) {
    outcomes[i] += other.outcomes[i];
    if (first_errno[i] == 0) first_errno[i] = other.first_errno[i];
  }
  if (targets.size() < other.targets.size()) targets.resize(other.targets.size());
  for (size_t i = 0; i < other.targets.size(); ++i) {
    targets[i].ok += other.targets[i].ok;
    targets[i].wrong += other.targets[i].wrong;
    targets[i].failed += other.targets[i].failed;
    if (targets[i].wrong_example.empty()) targets[i].wrong_example = other.targets[i].wrong_example;
  }
  started += other.started;
}

// Each thread takes an equal share; the first threads take the remainder.
static uint64_t Share(uint64_t total, unsigned threads, unsigned thread) {
  return total / threads + (thread < total % threads ? 1 : 0);
}

Pacer::Pacer(const LoadOptions& options, unsigned thread, uint64_t start_ns)
    : budget_(options.connections ? Share(options.connections, options.threads, thread) : 0),
      concurrency_(std::max<uint64_t>(1, Share(options.concurrency, options.threads, thread))),
      rate_(options.rate / options.threads),
      max_in_flight_(std::max<uint64_t>(1, Share(options.max_in_flight, options.threads, thread))),
      start_ns_(start_ns),
      deadline_ns_(
          options.duration_s > 0 ? start_ns + static_cast<uint64_t>(options.duration_s * 1e9) : 0) {
}

bool Pacer::Finished(uint64_t now_ns) const {
  return (budget_ != 0 && started_ >= budget_) || (deadline_ns_ != 0 && now_ns >= deadline_ns_);
}

uint64_t Pacer::Allowed(uint64_t now_ns, uint64_t in_flight, uint64_t max_batch) const {
  if (Finished(now_ns)) return 0;
  uint64_t want = 0;
  if (rate_ > 0) {
    auto due = static_cast<uint64_t>(static_cast<double>(now_ns - start_ns_) * rate_ / 1e9) + 1;
    want = due > started_ ? due - started_ : 0;
    want = std::min(want, max_in_flight_ > in_flight ? max_in_flight_ - in_flight : 0);
  } else {
    want = concurrency_ > in_flight ? concurrency_ - in_flight : 0;
  }
  if (budget_ != 0) want = std::min(want, budget_ - started_);
  return std::min(want, max_batch);
}

uint64_t Pacer::WaitNs(uint64_t now_ns) const {
  constexpr uint64_t kTick = 10 * 1000 * 1000;  // deadlines are checked this often
  if (rate_ <= 0 || Finished(now_ns)) return kTick;
  auto next = start_ns_ + static_cast<uint64_t>(static_cast<double>(started_) * 1e9 / rate_);
  return next > now_ns ? std::min(kTick, next - now_ns) : 0;
}

ConnTable::ConnTable(size_t capacity) : conns_(capacity) {
  free_.reserve(capacity);
  for (size_t i = capacity; i > 0; --i) free_.push_back(i - 1);
}

Conn* ConnTable::Allocate(uint64_t now_ns, size_t target) {
  if (free_.empty()) return nullptr;
  size_t index = free_.back();
  free_.pop_back();
  Conn& c = conns_[index];
  ++c.generation;
  c.active = true;
  c.timed_out = false;
  c.pending_ops = 0;
  c.decided = Outcome::kCount;
  c.err = 0;
  c.fd = -1;
  c.target = target;
  c.start_ns = now_ns;
  c.connected_ns = 0;
  c.first_byte_ns = 0;
  c.got = 0;
  deadlines_.push_back({index, c.generation, now_ns});
  ++in_flight_;
  return &c;
}

void ConnTable::Free(Conn* conn) {
  conn->active = false;
  free_.push_back(IndexOf(conn));
  --in_flight_;
}

Outcome JudgeGreeting(const Conn& conn, const Target& target) {
  size_t n = std::min<size_t>(conn.got, target.greeting.size());
  if (std::memcmp(conn.buffer, target.greeting.data(), n) != 0) return Outcome::kWrongGreeting;
  if (conn.got > target.greeting.size()) return Outcome::kWrongGreeting;
  return conn.got == target.greeting.size() ? Outcome::kOk : Outcome::kCount;
}

void Record(ThreadStats& stats, const Conn& conn, Outcome outcome, uint64_t first_byte_ns,
            const std::vector<Target>& targets, int err) {
  auto i = static_cast<size_t>(outcome);
  ++stats.outcomes[i];
  if (err != 0 && stats.first_errno[i] == 0) stats.first_errno[i] = static_cast<uint64_t>(err);
  TargetStats& t = stats.targets[conn.target];
  if (outcome == Outcome::kOk) {
    ++t.ok;
    stats.latency.Record(first_byte_ns - conn.start_ns);
    stats.slowest.Offer({conn.start_ns, conn.connected_ns ? conn.connected_ns - conn.start_ns : 0,
                         first_byte_ns - conn.start_ns, static_cast<uint32_t>(conn.target)});
  } else if (outcome == Outcome::kWrongGreeting) {
    ++t.wrong;
    if (t.wrong_example.empty()) t.wrong_example.assign(conn.buffer, conn.got);
  } else {
    ++t.failed;
  }
  (void)targets;
}

}  // namespace sbx::bench
