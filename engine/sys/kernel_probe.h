// One start-up probe of the io_uring features the hot path uses, each tried
// for real (not only looked up in the opcode table). The daemon probes once
// on its main thread, logs the result in one line, and decides the I/O mode
// from FastPathUsable() before any worker starts.
#ifndef SBX_ENGINE_SYS_KERNEL_PROBE_H_
#define SBX_ENGINE_SYS_KERNEL_PROBE_H_

#include <string>

namespace sbx {

struct KernelFeatures {
  bool io_uring = false;          // io_uring_setup works at all
  bool single_issuer = false;     // IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN accepted
  bool multishot_accept = false;  // a real multishot accept delivered a connection with F_MORE
  bool sendmsg = false;           // IORING_OP_SENDMSG
  bool close = false;             // IORING_OP_CLOSE
  bool recvmsg = false;           // IORING_OP_RECVMSG
  bool link_timeout =
      false;  // IORING_OP_LINK_TIMEOUT (reported only: the design waits for no send)
  bool submit_wait_timeout = false;  // IORING_FEAT_EXT_ARG (wait with timeout, no extra syscall)
  bool uring_getsockname = false;    // SOCKET_URING_OP_GETSOCKNAME (Linux 6.19+)
  std::string kernel_release;

  // The fast path needs all of these; without them --io=uring falls back.
  // single_issuer: a worker's ring is created with SINGLE_ISSUER |
  // DEFER_TASKRUN (its Init fails without them).
  bool FastPathUsable() const {
    return io_uring && single_issuer && multishot_accept && sendmsg && close && submit_wait_timeout;
  }
  std::string Summary() const;
};

KernelFeatures ProbeKernelFeatures();

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_KERNEL_PROBE_H_
