// TCP socket options carried from a replaced listener to the sockets it
// accepts.
//
// A kernel TCP listener hands its options (TCP_NODELAY, SO_KEEPALIVE, the
// keepalive timers, buffer sizes, SO_LINGER...) down to each accepted socket.
// A replaced listener is a Unix socket and its connections are accepted by
// the socketbox daemon, so the original silently lost them. We keep them:
// options set on the TCP socket before bind are read back at bind time, and
// later TCP-level setsockopt calls on the replaced socket are recorded
// instead of failing with EOPNOTSUPP (Apache's TCP_DEFER_ACCEPT warning).
// Each accepted socket then gets the recorded options applied.
#ifndef SBX_PRELOAD_SOCKET_OPTIONS_H_
#define SBX_PRELOAD_SOCKET_OPTIONS_H_

#include <sys/socket.h>

#include <cstdint>

namespace sbx::preload {

class OptionSet {
 public:
  // Records an option set by the program on a replaced listener. Returns
  // true when the call is to be answered with success without reaching the
  // Unix socket: every IPPROTO_TCP / IPPROTO_IP / IPPROTO_IPV6 option (those
  // that accepted sockets inherit are kept, listener-only ones such as
  // TCP_DEFER_ACCEPT or IPV6_V6ONLY are accepted and dropped) and the
  // SOL_SOCKET options that accepted sockets inherit. Other SOL_SOCKET
  // options (SO_REUSEADDR...) go to the Unix socket as before.
  bool Record(int level, int name, const void* value, socklen_t len);

  // Reads the inheritable options of TCP socket `fd` that differ from a
  // fresh socket of `family` (what the program set before bind).
  static OptionSet CaptureChanged(int fd, int family);

  // Sets the recorded options on accepted TCP socket `fd`. Errors are
  // ignored: the connection is still good without them.
  void ApplyTo(int fd) const;

  bool empty() const { return present_ == 0 && !has_linger_; }
  bool Has(int level, int name, int* value) const;

 private:
  static constexpr int kMaxInts = 16;
  int values_[kMaxInts] = {};
  uint32_t present_ = 0;
  bool has_linger_ = false;
  linger linger_{};
};

}  // namespace sbx::preload

#endif  // SBX_PRELOAD_SOCKET_OPTIONS_H_
