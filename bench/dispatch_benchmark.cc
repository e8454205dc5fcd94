// Dispatch capacity: how many fds per second one core can hand to a backend
// over a Unix datagram socketpair (the connections are stand-ins: dups of
// one stream socket).
//
//   BM_SendmsgLoop: the classic path, sendmsg(2) + close(2) per fd.
//   BM_UringDispatch: the engine's path, as in engine/dispatch/uring_worker.cc:
//     per fd one IORING_OP_SENDMSG (FdMessage layout, MSG_DONTWAIT) linked to
//     the IORING_OP_CLOSE of that fd (no completion on success), consecutive
//     sends to the backend chained; a batch of fds per submit, as under load.
//     One completion per fd.
// The receiver is drained (recvmsg + close per fd) with the timer paused: it
// stands for the backend, which runs elsewhere.
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/core/fd_passing.h"
#include "engine/sys/unique_fd.h"

namespace sbx {
namespace {

struct Pair {
  UniqueFd sender, receiver, conn, conn_peer;
  Pair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
    sender.Reset(fds[0]);
    receiver.Reset(fds[1]);
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
    conn.Reset(fds[0]);
    conn_peer.Reset(fds[1]);
  }
  // Fresh descriptors to pass (each is closed by the code under test).
  void Dup(std::vector<int>& out, size_t n) const {
    out.clear();
    for (size_t i = 0; i < n; ++i) out.push_back(::dup(conn.get()));
  }
  void Drain(size_t n) const {
    for (size_t i = 0; i < n; ++i) {
      auto fd = ReceiveFd(receiver.get(), {StrictLevel::kAny, 0, nullptr});
      if (!fd.ok()) std::abort();
    }
  }
};

void BM_SendmsgLoop(benchmark::State& state) {
  const auto batch = static_cast<size_t>(state.range(0));
  Pair pair;
  std::vector<int> fds;
  for (auto _ : state) {
    state.PauseTiming();
    pair.Dup(fds, batch);
    state.ResumeTiming();
    for (int fd : fds) {
      if (!SendFd(pair.sender.get(), fd).ok()) std::abort();
      ::close(fd);
    }
    state.PauseTiming();
    pair.Drain(batch);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
}

void BM_UringDispatch(benchmark::State& state) {
  const auto batch = static_cast<size_t>(state.range(0));
  Pair pair;
  io_uring ring;
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (io_uring_queue_init_params(4096, &ring, &params) != 0) {
    state.SkipWithError("io_uring_queue_init failed");
    return;
  }
  std::vector<FdMessage> messages(batch);
  std::vector<int> fds;
  for (auto _ : state) {
    state.PauseTiming();
    pair.Dup(fds, batch);
    state.ResumeTiming();
    for (size_t i = 0; i < batch; ++i) {
      messages[i].Prepare(fds[i]);
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_sendmsg(sqe, pair.sender.get(), &messages[i].hdr, MSG_NOSIGNAL | MSG_DONTWAIT);
      sqe->flags |= IOSQE_IO_LINK;
      io_uring_sqe_set_data64(sqe, i + 1);
      io_uring_sqe* close = io_uring_get_sqe(&ring);
      io_uring_prep_close(close, fds[i]);
      close->flags |= IOSQE_CQE_SKIP_SUCCESS | (i + 1 < batch ? IOSQE_IO_LINK : 0);
      io_uring_sqe_set_data64(close, 0);
    }
    io_uring_submit_and_wait(&ring, static_cast<unsigned>(batch));
    unsigned head = 0, seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      if (cqe->res < 0) std::abort();  // a failed send, or a close that failed
    }
    io_uring_cq_advance(&ring, seen);
    if (seen != batch) std::abort();
    state.PauseTiming();
    pair.Drain(batch);
    state.ResumeTiming();
  }
  io_uring_queue_exit(&ring);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
}

BENCHMARK(BM_SendmsgLoop)->Arg(64)->Arg(256);
BENCHMARK(BM_UringDispatch)->Arg(64)->Arg(256);

}  // namespace
}  // namespace sbx

BENCHMARK_MAIN();
