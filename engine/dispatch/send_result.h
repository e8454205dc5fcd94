// What the result of one send of a connection to a backend means. Both
// workers act on it the same way (through DispatchScheduler), so the
// taxonomy lives here once.
#ifndef SBX_ENGINE_DISPATCH_SEND_RESULT_H_
#define SBX_ENGINE_DISPATCH_SEND_RESULT_H_

#include <cerrno>

namespace sbx {

enum class SendOutcome {
  kDelivered,    // the message is in the backend's queue
  kNotTried,     // ECANCELED: an earlier send of the same chain failed first
  kQueueFull,    // EAGAIN: wait for room, up to the deadline
  kBackendGone,  // closed, restarted or unlinked: reconnect and wait
  kFailed,       // anything else: close the connection and count it
};

// A send error that means the backend went away (closed, restarted,
// unlinked): wait for it to come back instead of dropping.
inline bool IsBackendGone(int err) {
  return err == ECONNREFUSED || err == ENOENT || err == ENOTCONN || err == ECONNRESET ||
         err == EPIPE || err == EDESTADDRREQ;
}

// `res` is a send's result (>= 0) or -errno. A borrowed fd (jump-fd, -i)
// cannot be reconnected, so its peer going away is a plain failure.
inline SendOutcome ClassifySend(int res, bool reconnectable) {
  if (res >= 0) return SendOutcome::kDelivered;
  const int err = -res;
  if (err == ECANCELED) return SendOutcome::kNotTried;
  if (err == EAGAIN || err == EWOULDBLOCK) return SendOutcome::kQueueFull;
  if (reconnectable && IsBackendGone(err)) return SendOutcome::kBackendGone;
  return SendOutcome::kFailed;
}

}  // namespace sbx

#endif  // SBX_ENGINE_DISPATCH_SEND_RESULT_H_
