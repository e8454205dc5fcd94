#include "engine/sys/kernel_probe.h"

#include <liburing.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/utsname.h>

#include <cstring>

#include "engine/sys/unique_fd.h"

namespace sbx {
namespace {

// liburing 2.3 (Debian 12) predates the socket command for getsockname; the
// kernel's number for it is defined here and only ever used behind the probe.
constexpr int kSocketUringOpGetsockname = 5;

// A real multishot accept on an autobound abstract Unix listener: no
// network, no file system, nothing left behind.
bool TryMultishotAccept(io_uring* ring) {
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sa_family_t family = AF_UNIX;
  if (!listener ||
      ::bind(listener.get(), reinterpret_cast<sockaddr*>(&family), sizeof(family)) != 0 ||
      ::listen(listener.get(), 4) != 0) {
    return false;
  }
  sockaddr_un name{};
  socklen_t name_len = sizeof(name);
  if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&name), &name_len) != 0)
    return false;
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  io_uring_prep_multishot_accept(sqe, listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_submit(ring);
  UniqueFd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&name), name_len) != 0) return false;
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts{1, 0};
  if (io_uring_wait_cqe_timeout(ring, &cqe, &ts) != 0) return false;
  const bool ok = cqe->res >= 0 && (cqe->flags & IORING_CQE_F_MORE) != 0;
  if (cqe->res >= 0) ::close(cqe->res);
  io_uring_cqe_seen(ring, cqe);
  return ok;
}

// Asks for the local name of a socket through the socket command; a kernel
// without it answers -EINVAL or -EOPNOTSUPP.
bool TryUringGetsockname(io_uring* ring) {
  UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock) return false;
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, sock.get(), nullptr, 0, 0);
  sqe->cmd_op = kSocketUringOpGetsockname;
  io_uring_submit(ring);
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts{1, 0};
  if (io_uring_wait_cqe_timeout(ring, &cqe, &ts) != 0) return false;
  const int res = cqe->res;
  io_uring_cqe_seen(ring, cqe);
  return res != -EINVAL && res != -EOPNOTSUPP && res != -ENOTSUP;
}

}  // namespace

std::string KernelFeatures::Summary() const {
  auto yn = [](bool b) { return b ? "yes" : "no"; };
  std::string s = "kernel " + kernel_release + ": io_uring=" + yn(io_uring) +
                  " single-issuer+defer-taskrun=" + yn(single_issuer) +
                  " multishot-accept=" + yn(multishot_accept) + " sendmsg=" + yn(sendmsg) +
                  " close=" + yn(close) + " recvmsg=" + yn(recvmsg) +
                  " link-timeout=" + yn(link_timeout) + " wait-timeout=" + yn(submit_wait_timeout) +
                  " uring-getsockname=" + yn(uring_getsockname);
  return s;
}

KernelFeatures ProbeKernelFeatures() {
  KernelFeatures f;
  utsname uts{};
  if (::uname(&uts) == 0) f.kernel_release = uts.release;

  io_uring ring;
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (io_uring_queue_init_params(8, &ring, &params) == 0) {
    f.io_uring = f.single_issuer = true;
  } else {
    params = {};
    if (io_uring_queue_init_params(8, &ring, &params) != 0) return f;
    f.io_uring = true;
  }
  f.submit_wait_timeout = (params.features & IORING_FEAT_EXT_ARG) != 0;
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
    f.sendmsg = io_uring_opcode_supported(probe, IORING_OP_SENDMSG);
    f.close = io_uring_opcode_supported(probe, IORING_OP_CLOSE);
    f.recvmsg = io_uring_opcode_supported(probe, IORING_OP_RECVMSG);
    f.link_timeout = io_uring_opcode_supported(probe, IORING_OP_LINK_TIMEOUT);
    const bool accept = io_uring_opcode_supported(probe, IORING_OP_ACCEPT);
    const bool uring_cmd = io_uring_opcode_supported(probe, IORING_OP_URING_CMD);
    io_uring_free_probe(probe);
    f.multishot_accept = accept && TryMultishotAccept(&ring);
    f.uring_getsockname = uring_cmd && TryUringGetsockname(&ring);
  }
  io_uring_queue_exit(&ring);
  return f;
}

}  // namespace sbx
