#include "bench/sink/sink_worker.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "engine/sys/ring.h"
#include "engine/sys/user_data.h"

namespace sbx::bench {
namespace {

constexpr unsigned kRingEntries = 1024;

// user_data: PackUserData(tag, index).
enum Tag : uint8_t { kRecv = 1, kAccept = 2, kGreet = 3, kClose = 4 };
uint64_t Pack(Tag tag, size_t index) { return PackUserData(tag, static_cast<uint32_t>(index)); }

// The storage the kernel writes for one posted RECVMSG.
struct RecvSlot {
  msghdr hdr{};
  iovec iov{};
  char data[16]{};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(kMaxFdsPerMessage * sizeof(int))]{};
  sockaddr_un from{};  // the sender, for the receiver protocol's replies
  size_t endpoint = 0;
};

class Worker {
 public:
  explicit Worker(const SinkWorkerConfig& config)
      : config_(config), slots_(config.endpoints.size() * config.recv_depth) {
    // Datagram channels only: a registration channel has no sender address.
    replies_.resize(config.endpoints.size());
    for (size_t e = 0; e < config.endpoints.size(); ++e) {
      const SinkEndpoint& endpoint = config.endpoints[e];
      if (config.capabilities.active() && endpoint.kind == SinkEndpoint::Kind::kChannel &&
          !endpoint.seqpacket) {
        replies_[e].emplace(config.capabilities);
        replies_[e]->set_relay(endpoint.relay);
      }
    }
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  int Run();

 private:
  io_uring_sqe* Sqe();
  void PostRecv(size_t slot);
  void PostAccept(size_t endpoint);
  void Greet(int fd, size_t backend);
  void OnRecv(size_t slot, int res);
  void OnAccept(size_t endpoint, int res, unsigned flags);
  void EndpointFailed(size_t endpoint, int err);

  const SinkWorkerConfig& config_;
  std::vector<RecvSlot> slots_;
  std::vector<std::optional<SenderReplies>> replies_;  // per endpoint
  Ring ring_;
};

io_uring_sqe* Worker::Sqe() {
  io_uring_sqe* sqe = ring_.GetSqeOrSubmit();
  if (sqe == nullptr) {  // the kernel took nothing from a full queue
    std::fprintf(stderr, "sink: io_uring submission failed: %s\n", std::strerror(-ring_.Submit()));
    std::abort();
  }
  return sqe;
}

void Worker::PostRecv(size_t slot_index) {
  RecvSlot& slot = slots_[slot_index];
  // Zeroed control buffer: an absent cmsg reads as length 0 afterwards, so we
  // never depend on the kernel writing msg_controllen back.
  std::memset(slot.control, 0, sizeof(slot.control));
  slot.iov = {slot.data, sizeof(slot.data)};
  slot.hdr = {};
  slot.hdr.msg_iov = &slot.iov;
  slot.hdr.msg_iovlen = 1;
  slot.hdr.msg_control = slot.control;
  slot.hdr.msg_controllen = sizeof(slot.control);
  if (replies_[slot.endpoint]) {
    slot.hdr.msg_name = &slot.from;
    slot.hdr.msg_namelen = sizeof(slot.from);
  }
  const SinkEndpoint& endpoint = config_.endpoints[slot.endpoint];
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_recvmsg(sqe, endpoint.fd, &slot.hdr, MSG_CMSG_CLOEXEC);
  io_uring_sqe_set_data64(sqe, Pack(kRecv, slot_index));
}

void Worker::PostAccept(size_t endpoint) {
  io_uring_sqe* sqe = Sqe();
  io_uring_prep_multishot_accept(sqe, config_.endpoints[endpoint].fd, nullptr, nullptr,
                                 SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, Pack(kAccept, endpoint));
}

void Worker::Greet(int fd, size_t backend) {
  config_.counters->per_backend[backend].received.fetch_add(1, std::memory_order_relaxed);
  const std::string& name = (*config_.names)[backend];
  // Both halves of the link must go in one submission, or the chain breaks.
  ring_.MakeRoomFor(2);
  io_uring_sqe* send = Sqe();
  io_uring_prep_send(send, fd, name.data(), name.size(), MSG_NOSIGNAL);
  // HARDLINK: the close runs even when the send fails.
  send->flags |= IOSQE_IO_HARDLINK | IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(send, Pack(kGreet, backend));
  io_uring_sqe* close = Sqe();
  io_uring_prep_close(close, fd);
  close->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(close, Pack(kClose, backend));
}

void Worker::EndpointFailed(size_t endpoint, int err) {
  if (config_.endpoints[endpoint].failed->exchange(true)) return;  // already told
  config_.counters->channel_closed.fetch_add(1, std::memory_order_relaxed);
  std::fprintf(
      stderr, "sink: %s %zu stopped: %s\n",
      config_.endpoints[endpoint].kind == SinkEndpoint::Kind::kListener ? "listener" : "channel",
      endpoint, err ? std::strerror(err) : "peer closed");
}

void Worker::OnRecv(size_t slot_index, int res) {
  RecvSlot& slot = slots_[slot_index];
  const SinkEndpoint& endpoint = config_.endpoints[slot.endpoint];
  const auto* cmsg = reinterpret_cast<const cmsghdr*>(slot.control);
  size_t nfds = 0;
  if (res >= 0 && cmsg->cmsg_len > CMSG_LEN(0) && cmsg->cmsg_level == SOL_SOCKET &&
      cmsg->cmsg_type == SCM_RIGHTS) {
    nfds = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
  }
  if (res < 0 || (res == 0 && nfds == 0 && endpoint.seqpacket)) {
    // Errors on a blocking Unix channel are not transient: it is gone.
    if (res != -ECANCELED) EndpointFailed(slot.endpoint, -res);
    return;
  }
  if (replies_[slot.endpoint]) {
    // The kernel wrote the sender's address length back into msg_namelen.
    replies_[slot.endpoint]->OnMessage(endpoint.fd, slot.from, slot.hdr.msg_namelen, nfds);
  }
  if (nfds == 0) {
    config_.counters->no_fd.fetch_add(1, std::memory_order_relaxed);
  } else {
    int fds[kMaxFdsPerMessage];
    std::memcpy(fds, CMSG_DATA(cmsg), nfds * sizeof(int));
    for (size_t i = 0; i < nfds; ++i) {
      if (i < config_.capabilities.max_fds) {
        Greet(fds[i], endpoint.backend);
      } else {
        // More than this sink declared: counted, so a benchmark shows it.
        config_.counters->extra_fds.fetch_add(1, std::memory_order_relaxed);
        ::close(fds[i]);
      }
    }
  }
  if (!config_.stop->load(std::memory_order_relaxed)) PostRecv(slot_index);
}

void Worker::OnAccept(size_t endpoint, int res, unsigned flags) {
  if (res >= 0) {
    const SinkEndpoint& from = config_.endpoints[endpoint];
    BackendCounters& counters = config_.counters->per_backend[from.backend];
    if (from.taken) counters.via_listener.fetch_add(1, std::memory_order_relaxed);
    Greet(res, from.backend);
  } else if (res != -ECANCELED && res != -EAGAIN && res != -ECONNABORTED && res != -EINTR &&
             res != -EMFILE && res != -ENFILE && res != -ENOBUFS && res != -ENOMEM) {
    EndpointFailed(endpoint, -res);
    return;
  }
  // Multishot ends on errors and overflow: re-arm unless told to stop.
  if (!(flags & IORING_CQE_F_MORE) && !config_.stop->load(std::memory_order_relaxed)) {
    PostAccept(endpoint);
  }
}

int Worker::Run() {
  if (int err = ring_.Init(kRingEntries, kRingEntries * 8,
                           IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
      err < 0) {
    std::fprintf(stderr, "sink: io_uring_queue_init: %s\n", std::strerror(-err));
    config_.ready->count_down();
    return -err;
  }
  for (size_t e = 0; e < config_.endpoints.size(); ++e) {
    if (config_.endpoints[e].kind == SinkEndpoint::Kind::kListener) {
      PostAccept(e);
      continue;
    }
    for (size_t k = 0; k < config_.recv_depth; ++k) {
      slots_[e * config_.recv_depth + k].endpoint = e;
      PostRecv(e * config_.recv_depth + k);
    }
  }
  ring_.Submit();
  config_.ready->count_down();
  constexpr uint64_t kTickNs = 100 * 1000 * 1000;
  bool stopping = false;
  while (true) {
    int ret = ring_.SubmitAndWait(1, kTickNs, 0);
    if (ret < 0 && ret != -ETIME && ret != -EINTR) {
      std::fprintf(stderr, "sink: io_uring wait: %s\n", std::strerror(-ret));
      return -ret;
    }
    ring_.ForEachCompletion([this](const io_uring_cqe* cqe) {
      const uint32_t index = UserDataIndex(cqe->user_data);
      switch (static_cast<Tag>(UserDataOp(cqe->user_data))) {
        case kRecv:
          OnRecv(index, cqe->res);
          break;
        case kAccept:
          OnAccept(index, cqe->res, cqe->flags);
          break;
        case kGreet:  // only failures arrive here
          config_.counters->per_backend[index].send_errors.fetch_add(1, std::memory_order_relaxed);
          break;
        case kClose:
          config_.counters->close_errors.fetch_add(1, std::memory_order_relaxed);
          break;
      }
    });
    if (stopping) break;
    if (config_.stop->load(std::memory_order_relaxed)) {
      // One more turn flushes greetings queued by the last completions.
      stopping = true;
    }
  }
  return 0;
}

}  // namespace

int RunSinkWorker(const SinkWorkerConfig& config) {
  Worker worker(config);
  return worker.Run();
}

}  // namespace sbx::bench
