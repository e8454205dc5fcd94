// The whole hop: what it costs to move connected sockets from the acceptor
// to a backend, both ends (dispatch_benchmark measures the sender alone).
// Per fd: the sender passes it over a Unix datagram socketpair and closes
// its copy; the receiver takes it out. Both ends run on this one core, so a
// rate here is fds per CPU-second of sender + receiver together.
//
//   BM_HopOneFdPerMessage/B: the "A" protocol as the original speaks it, the
//     project's own SendFd / ReceiveFd (engine/core/fd_passing): one message
//     (1 byte + 1 fd) per socket; B messages sent, then B received.
//   BM_HopFdsPerMessage/B: B fds in one SCM_RIGHTS message, one sendmsg(2)
//     and one recvmsg(2) for all of them (a receiver has to declare that it
//     takes several: one that does not keeps only the first).
//   BM_HopBatchedMessages/B: still one fd per message, but B messages per
//     sendmmsg(2) and recvmmsg(2).
// The fds received are the next round's fds to send: the number of open
// files stays constant and nothing but the hop is in the timed loop.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/core/fd_passing.h"
#include "engine/sys/unique_fd.h"

namespace sbx {
namespace {

struct Hop {
  UniqueFd sender, receiver;
  std::vector<int> fds;  // owned: the sockets in transit, closed at the end

  explicit Hop(size_t n) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) != 0) std::abort();
    sender.Reset(pair[0]);
    receiver.Reset(pair[1]);
    for (size_t i = 0; i < n; ++i) {
      int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) std::abort();
      fds.push_back(fd);
    }
  }
  ~Hop() {
    for (int fd : fds) ::close(fd);
  }
  Hop(const Hop&) = delete;
  Hop& operator=(const Hop&) = delete;
};

void BM_HopOneFdPerMessage(benchmark::State& state) {
  const auto batch = static_cast<size_t>(state.range(0));
  Hop hop(batch);
  const ReceiveOptions options{StrictLevel::kAny, MSG_DONTWAIT, nullptr};
  for (auto _ : state) {
    for (int fd : hop.fds) {
      if (!SendFd(hop.sender.get(), fd, MSG_DONTWAIT).ok()) std::abort();
      ::close(fd);
    }
    for (int& fd : hop.fds) {
      auto received = ReceiveFd(hop.receiver.get(), options);
      if (!received.ok()) std::abort();
      fd = received.value().Release();
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
}

// Control buffer for up to `n` fds in one SCM_RIGHTS message.
std::vector<unsigned char> ControlFor(size_t n) {
  return std::vector<unsigned char>(CMSG_SPACE(n * sizeof(int)), 0);
}

void BM_HopFdsPerMessage(benchmark::State& state) {
  const auto batch = static_cast<size_t>(state.range(0));
  Hop hop(batch);
  const size_t fd_bytes = batch * sizeof(int);
  auto send_control = ControlFor(batch);
  auto recv_control = ControlFor(batch);
  uint8_t byte = 0;
  for (auto _ : state) {
    iovec iov{&byte, 1};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = send_control.data();
    msg.msg_controllen = send_control.size();
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(fd_bytes);
    std::memcpy(CMSG_DATA(cm), hop.fds.data(), fd_bytes);
    if (::sendmsg(hop.sender.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) std::abort();
    for (int fd : hop.fds) ::close(fd);

    msghdr in{};
    in.msg_iov = &iov;
    in.msg_iovlen = 1;
    in.msg_control = recv_control.data();
    in.msg_controllen = recv_control.size();
    if (::recvmsg(hop.receiver.get(), &in, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) != 1) std::abort();
    cmsghdr* got = CMSG_FIRSTHDR(&in);
    if ((in.msg_flags & MSG_CTRUNC) || got == nullptr || got->cmsg_len != CMSG_LEN(fd_bytes)) {
      std::abort();
    }
    std::memcpy(hop.fds.data(), CMSG_DATA(got), fd_bytes);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
}

void BM_HopBatchedMessages(benchmark::State& state) {
  const auto batch = static_cast<size_t>(state.range(0));
  Hop hop(batch);
  std::vector<FdMessage> out(batch);
  std::vector<mmsghdr> send_vec(batch), recv_vec(batch);
  struct Slot {
    uint8_t byte = 0;
    iovec iov{};
    alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int))]{};
  };
  std::vector<Slot> in(batch);
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) {
      out[i].Prepare(hop.fds[i]);
      send_vec[i] = mmsghdr{out[i].hdr, 0};
    }
    if (::sendmmsg(hop.sender.get(), send_vec.data(), static_cast<unsigned>(batch),
                   MSG_NOSIGNAL | MSG_DONTWAIT) != static_cast<int>(batch)) {
      std::abort();
    }
    for (int fd : hop.fds) ::close(fd);
    for (size_t i = 0; i < batch; ++i) {
      in[i].iov = {&in[i].byte, 1};
      msghdr& h = recv_vec[i].msg_hdr;
      h = msghdr{};
      h.msg_iov = &in[i].iov;
      h.msg_iovlen = 1;
      h.msg_control = in[i].control;
      h.msg_controllen = sizeof(in[i].control);
    }
    if (::recvmmsg(hop.receiver.get(), recv_vec.data(), static_cast<unsigned>(batch),
                   MSG_DONTWAIT | MSG_CMSG_CLOEXEC, nullptr) != static_cast<int>(batch)) {
      std::abort();
    }
    for (size_t i = 0; i < batch; ++i) {
      hop.fds[i] = TakeFirstFdCloseRest(&recv_vec[i].msg_hdr);
      if (hop.fds[i] < 0) std::abort();
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
}

BENCHMARK(BM_HopOneFdPerMessage)->Arg(1)->Arg(16)->Arg(64);
BENCHMARK(BM_HopFdsPerMessage)->Arg(16)->Arg(64);
BENCHMARK(BM_HopBatchedMessages)->Arg(16)->Arg(64);

}  // namespace
}  // namespace sbx

BENCHMARK_MAIN();
