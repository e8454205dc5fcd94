// One start-up probe of the io_uring features the hot path uses, each tried
// for real (not only looked up in the opcode table), logged in one line and
// then passed around by const reference.
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
  bool link_timeout = false;      // IORING_OP_LINK_TIMEOUT
  bool submit_wait_timeout = false;  // IORING_FEAT_EXT_ARG (wait with timeout, no extra syscall)
  bool uring_getsockname = false;    // SOCKET_URING_OP_GETSOCKNAME (Linux 6.19+)
  std::string kernel_release;

  // The fast path needs all of these; without them --io=uring falls back.
  bool FastPathUsable() const {
    return io_uring && multishot_accept && sendmsg && close && link_timeout && submit_wait_timeout;
  }
  std::string Summary() const;
};

KernelFeatures ProbeKernelFeatures();

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_KERNEL_PROBE_H_
