// The io_uring driver: socket(2), then CONNECT linked to RECV, batched into
// one io_uring_enter per loop turn; CLOSE goes through the ring too (no
// completion on success). Per connection: one socket(2) plus a share of
// io_uring_enter. A connection's slot is kept until its last completion
// arrived, so a completion never names a reused slot.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bench/loadgen/loadgen_core.h"
#include "engine/sys/ring.h"
#include "engine/sys/user_data.h"

namespace sbx::bench {
namespace {

constexpr unsigned kRingEntries = 2048;
// user_data: PackUserData(tag, the connection's slot).
enum Tag : uint8_t { kConnect = 1, kRecv = 2, kIgnore = 3 };

class UringDriver {
 public:
  UringDriver(const LoadOptions& options, unsigned thread, ThreadStats& stats)
      : options_(options),
        stats_(stats),
        pacer_(options, thread, NowNs()),
        table_(ConnTable::CapacityFor(options)),
        next_target_(thread % options.targets.size()) {}
  UringDriver(const UringDriver&) = delete;
  UringDriver& operator=(const UringDriver&) = delete;

  int Run();

 private:
  io_uring_sqe* Sqe(unsigned needed = 1);
  void Start(uint64_t now);
  void PostRecv(Conn& conn, unsigned flags);
  void OnCompletion(uint64_t data, int res);
  void Decide(Conn& conn, Outcome outcome, int err = 0);
  void MaybeFinish(Conn& conn);

  const LoadOptions& options_;
  ThreadStats& stats_;
  Pacer pacer_;
  ConnTable table_;
  size_t next_target_;
  Ring ring_;
  std::vector<sockaddr_storage> addresses_;
  std::vector<socklen_t> lengths_;
};

io_uring_sqe* UringDriver::Sqe(unsigned needed) {
  // Linked requests must go in one submission: make room for all of them.
  if (!ring_.MakeRoomFor(needed)) {
    std::fprintf(stderr, "load_generator: io_uring submission failed: %s\n",
                 std::strerror(-ring_.Submit()));
    std::abort();
  }
  return ring_.GetSqe();
}

uint64_t Pack(Tag tag, size_t index) { return PackUserData(tag, static_cast<uint32_t>(index)); }

void UringDriver::PostRecv(Conn& conn, unsigned flags) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_recv(sqe, conn.fd, conn.buffer + conn.got, sizeof(conn.buffer) - conn.got, 0);
  sqe->flags |= static_cast<uint8_t>(flags);
  io_uring_sqe_set_data64(sqe, Pack(kRecv, table_.IndexOf(&conn)));
  ++conn.pending_ops;
}

void UringDriver::Start(uint64_t now) {
  size_t target_index = next_target_;
  next_target_ = (next_target_ + 1) % options_.targets.size();
  Conn* conn = table_.Allocate(now, target_index);
  if (conn == nullptr) return;  // the pacer never asks for more than fits
  pacer_.Started();
  ++stats_.started;
  // Blocking socket on purpose: io_uring polls it itself, and CONNECT on an
  // O_NONBLOCK socket would complete with EINPROGRESS.
  conn->fd = ::socket(options_.targets[target_index].address.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (conn->fd < 0) {
    int err = errno;
    Record(stats_, *conn, Outcome::kLocal, 0, options_.targets, err);
    table_.Free(conn);
    return;
  }
  io_uring_sqe* sqe = Sqe(2);
  io_uring_prep_connect(sqe, conn->fd, reinterpret_cast<sockaddr*>(&addresses_[target_index]),
                        lengths_[target_index]);
  sqe->flags |= IOSQE_IO_LINK;
  io_uring_sqe_set_data64(sqe, Pack(kConnect, table_.IndexOf(conn)));
  ++conn->pending_ops;
  PostRecv(*conn, 0);
}

void UringDriver::Decide(Conn& conn, Outcome outcome, int err) {
  if (conn.decided == Outcome::kCount) {
    conn.decided = outcome;
    conn.err = err;
  }
}

void UringDriver::MaybeFinish(Conn& conn) {
  if (conn.pending_ops > 0 || conn.decided == Outcome::kCount) return;
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_close(sqe, conn.fd);
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(sqe, Pack(kIgnore, 0));
  Record(stats_, conn, conn.decided, conn.first_byte_ns, options_.targets, conn.err);
  table_.Free(&conn);
}

void UringDriver::OnCompletion(uint64_t data, int res) {
  auto tag = static_cast<Tag>(UserDataOp(data));
  if (tag == kIgnore) return;
  Conn& conn = table_.at(UserDataIndex(data));
  --conn.pending_ops;
  if (res == -ECANCELED) {
    // The connect failed (its own completion says why) or we timed it out.
  } else if (tag == kConnect) {
    if (res < 0) {
      Decide(conn, OutcomeOfErrno(-res), -res);
    } else {
      conn.connected_ns = NowNs();
    }
  } else if (res > 0) {
    if (conn.got == 0) conn.first_byte_ns = NowNs();
    conn.got += static_cast<uint32_t>(res);
    Outcome judged = JudgeGreeting(conn, options_.targets[conn.target]);
    if (judged != Outcome::kCount) {
      Decide(conn, judged);
    } else if (conn.decided == Outcome::kCount) {
      PostRecv(conn, 0);  // a longer greeting, still arriving
    }
  } else if (res == 0) {
    Decide(conn, conn.got ? Outcome::kWrongGreeting : Outcome::kNoGreeting);
  } else {
    Decide(conn, OutcomeOfErrno(-res), -res);
  }
  if (conn.decided == Outcome::kCount && conn.pending_ops == 0) {
    Decide(conn, Outcome::kOther, ECANCELED);  // cannot happen; never leak the slot
  }
  MaybeFinish(conn);
}

int UringDriver::Run() {
  for (const Target& target : options_.targets) {
    addresses_.emplace_back();
    lengths_.push_back(target.address.ToSockaddr(&addresses_.back()));
  }
  if (int err = ring_.Init(kRingEntries, kRingEntries * 4,
                           IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
      err < 0) {
    std::fprintf(stderr, "load_generator: io_uring_queue_init: %s\n", std::strerror(-err));
    return -err;
  }
  const uint64_t timeout_ns = options_.timeout_ms * 1000000;
  while (true) {
    uint64_t now = NowNs();
    for (uint64_t n = pacer_.Allowed(now, table_.in_flight(), 512); n > 0; --n) Start(now);
    table_.Expire(now, timeout_ns, [&](Conn& c) {
      c.timed_out = true;
      Decide(c, Outcome::kTimeout);
      io_uring_sqe* sqe = Sqe();
      io_uring_prep_cancel_fd(sqe, c.fd, IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(sqe, Pack(kIgnore, 0));
    });
    if (pacer_.Finished(now) && table_.in_flight() == 0) {
      ring_.Submit();  // the last closes
      return 0;
    }
    int ret = ring_.SubmitAndWait(1, pacer_.WaitNs(now), 0);
    if (ret < 0 && ret != -ETIME && ret != -EINTR) {
      std::fprintf(stderr, "load_generator: io_uring wait: %s\n", std::strerror(-ret));
      return -ret;
    }
    ring_.ForEachCompletion(
        [this](const io_uring_cqe* cqe) { OnCompletion(cqe->user_data, cqe->res); });
  }
}

}  // namespace

int RunUringThread(const LoadOptions& options, unsigned thread, ThreadStats& stats) {
  UringDriver driver(options, thread, stats);
  return driver.Run();
}

}  // namespace sbx::bench
