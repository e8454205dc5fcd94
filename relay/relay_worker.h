// A relay worker: one thread, one io_uring, its own connections.
//
// Every worker takes connections from the same source fd (each keeps one
// accept or recvmsg in flight on it; the kernel hands each connection to one
// of them) and relays them to the target with both directions in flight at
// once. Run() returns when the worker has drained after RequestStop(), when
// a stream source's sender went away, or when its ring fails (failed(): the
// relay then stops the others and exits non-zero).
//
// Threads: the constructor and RequestStop() run on any thread; everything
// else on the worker's own thread, which also creates the ring (so that
// IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN hold).
#ifndef SBX_RELAY_RELAY_WORKER_H_
#define SBX_RELAY_RELAY_WORKER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "engine/sys/ring.h"
#include "engine/sys/unique_fd.h"
#include "relay/connection.h"
#include "relay/options.h"
#include "relay/relay_stats.h"

namespace sbx::relay {

struct Source {
  int fd = -1;
  bool receives_fds = false;    // -s / -e: recvmsg + SCM_RIGHTS; else accept
  bool stream_channel = false;  // a stream/seqpacket channel: EOF means the sender left
};

class RelayWorker {
 public:
  RelayWorker(int index, const RelayOptions& options, const Source& source,
              RelayWorkerStats& stats);
  ~RelayWorker();
  RelayWorker(const RelayWorker&) = delete;
  RelayWorker& operator=(const RelayWorker&) = delete;

  absl::Status Run();
  void RequestStop();
  bool finished() const { return finished_.load(); }
  // Its ring failed: Run() returned (or is returning) an error.
  bool failed() const { return failed_.load(); }

 private:
  // The op of a request's user_data (engine/sys/user_data.h).
  enum Op : uint8_t {
    // Worker-wide requests (PackUserData(op, 0)).
    kSourceOp = 1,
    kTickOp,
    kWakeOp,
    kSourceCancelOp,
    kCloseOp,
    // Per-connection requests (PackUserPointer(op, the Connection)).
    kConnectOp,
    kHeaderOp,
    kUpReadOp,
    kUpWriteOp,
    kDownReadOp,
    kDownWriteOp,
    kUpShutOp,
    kDownShutOp,
    kCancelOp,
  };

  absl::Status SetUpRing();
  io_uring_sqe* Sqe();
  // The ring failed for good with `rc`: ends the worker, its connections
  // reset and counted; returns Run's error.
  absl::Status Fail(int rc);
  void Submit(io_uring_sqe* sqe, Connection* c, Op op);
  void Dispatch(const io_uring_cqe* cqe);

  // Source (relay_source.cc).
  void ArmSource();
  void OnSource(int res);
  void TakeConnection(UniqueFd fd, const sockaddr* accepted_peer, socklen_t peer_len);
  bool Addresses(int fd, const sockaddr* accepted_peer, socklen_t peer_len,
                 std::optional<SocketAddress>* peer, std::optional<SocketAddress>* local);
  std::unique_ptr<char[]> TakeBuffer();
  void GiveBackBuffer(std::unique_ptr<char[]> buffer);
  bool SourcePaused() const;

  // Connections.
  void StartConnect(Connection* c);
  void OnConnect(Connection* c, int res);
  void SendHeader(Connection* c);
  void OnHeader(Connection* c, int res);
  void StartRead(Connection* c, Direction& d, Op op, bool poll_first = false);
  void StartWrite(Connection* c, Direction& d, Op op);
  void StartShutdown(Connection* c, Direction& d, Op op);
  void WaitFor(Connection* c, int fd, unsigned events, Op op);
  void SpliceIn(Connection* c, Direction& d, Op op);
  void SpliceOut(Connection* c, Direction& d, Op op);
  void OnReady(Connection* c, Direction& d, Op op);
  static constexpr int kSpliceRounds = 8;
  static constexpr uint64_t kNsPerS = 1'000'000'000;
  void OnRead(Connection* c, Direction& d, int res);
  void OnWrite(Connection* c, Direction& d, int res);
  void OnShutdown(Connection* c, Direction& d);
  void BeginClose(Connection* c, CloseReason reason, bool reset_client, bool reset_target);
  void MaybeFree(Connection* c);
  bool IsUp(const Connection* c, const Direction& d) const { return &d == &c->up; }

  // Timers and stopping.
  void ArmTick();
  void OnTick();
  void ArmWake();
  void OnWake();
  bool Done() const;

  const int index_;
  const RelayOptions& options_;
  const Source source_;
  RelayWorkerStats& stats_;
  Ring ring_;
  UniqueFd wake_fd_;
  uint64_t wake_value_ = 0;
  __kernel_timespec tick_{};
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> finished_{false};
  std::atomic<bool> failed_{false};
  int ring_error_ = 0;  // a submission that failed for good (Sqe), for Run

  // Source state: one request in flight at most.
  bool source_inflight_ = false;
  bool source_closed_ = false;   // draining, or the sender went away
  bool source_waiting_ = false;  // paused until a connection closes or a tick
  msghdr msg_{};
  iovec iov_{};
  char payload_[16]{};
  alignas(cmsghdr) char control_[CMSG_SPACE(sizeof(int) * 8)]{};
  sockaddr_storage peer_{};  // filled by the accept in flight
  socklen_t peer_len_ = 0;

  // Idle copy buffers, kept for the next connections (at most this much).
  static constexpr size_t kMaxFreeBufferBytes = 32u << 20;
  std::vector<std::unique_ptr<char[]>> free_buffers_;

  Connection* connections_ = nullptr;  // list head
  uint32_t open_ = 0;
  uint64_t drain_deadline_ns_ = 0;
};

}  // namespace sbx::relay

#endif  // SBX_RELAY_RELAY_WORKER_H_
