// --metrics-listen: a tiny HTTP/1.0 server for Prometheus scrapes, on its
// own listener and thread, away from the accept path. Non-blocking sockets,
// one poll loop. Each client has its own deadline of 2 seconds to send its
// request and take the answer, after which it is closed (with a 408 if its
// request was not complete), so silent or slow clients cannot hold the
// endpoint. At most 64 clients are served at once, at most 8 from one peer
// (an IPv4 address, or an IPv6 /64): a new client past a bound takes the
// place of the oldest one that has not sent its whole request yet (of its
// own peer, or of the peer with the most such clients), which is closed with
// a 503; only when every client is being answered does a new one wait in the
// listen backlog (a peer's: it is refused with a 503). So idle connections,
// however many, never make a scrape wait.
// When accept fails for want of fds or memory (EMFILE, ENFILE, ENOMEM,
// ENOBUFS), the listener pauses, as the daemon's own listeners do, for 5 ms
// doubling to 1 s, or until one of its clients leaves; the first failure of
// such a spell and the end of it are logged.
// GET /metrics (or /) answers 200 with the text; any other path 404,
// anything else 400. Serves socketbox's and socketbox-relay's counters.
#ifndef SBX_ENGINE_CORE_METRICS_SERVER_H_
#define SBX_ENGINE_CORE_METRICS_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "engine/core/address.h"
#include "engine/sys/unique_fd.h"

namespace sbx {

class MetricsServer {
 public:
  // Binds and listens on `address` (while still privileged).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Open(const SocketAddress& address);
  // Serves on a listening socket handed over by a predecessor (handover.h).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Adopt(UniqueFd listener);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Serves `render()`'s text until Stop() (or destruction).
  void Start(std::function<std::string()> render);
  void Stop();
  int listener_fd() const { return listener_.get(); }

 private:
  MetricsServer(UniqueFd listener, UniqueFd wake);
  void Serve();

  UniqueFd listener_;
  UniqueFd wake_;  // eventfd: Stop() wakes the thread's poll
  std::function<std::string()> render_;
  std::thread thread_;
};

}  // namespace sbx

#endif  // SBX_ENGINE_CORE_METRICS_SERVER_H_
