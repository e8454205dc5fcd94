// The two workers end to end, each on a thread of its own as the daemon
// runs them: a real listener, real client connections, a real receiving
// socket (the -S forced action), the stop. What one accepts must reach the
// receiver and be counted once, the engine's copy of each connection must
// be closed, and the stop must end the worker; the io_uring worker and the
// sync worker alike. Every wait is bounded (5 s): a worker that stopped
// early fails the test instead of hanging it.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "engine/core/address_ops.h"
#include "engine/core/fd_passing.h"
#include "engine/dispatch/control.h"
#include "engine/dispatch/stats.h"
#include "engine/dispatch/sync_worker.h"
#include "engine/dispatch/uring_worker.h"
#include "engine/sys/kernel_probe.h"
#include "gtest/gtest.h"
#include "tests/unit/daemon_test_support.h"

namespace sbx {
namespace {

constexpr int kClients = 20;

enum class Kind { kUring, kSync };

class WorkersTest : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    listener_.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&any), sizeof any), 0);
    ASSERT_EQ(::listen(listener_.get(), 64), 0);
    socklen_t len = sizeof address_;
    ASSERT_EQ(::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&address_), &len), 0);
    receiver_ = testing::BindReceiver(dir_.File("receiver"));
    BoundWaits(receiver_.get());
    config_.forced_path = dir_.File("receiver");
  }

  // A worker that stopped early must fail the test, not hang it.
  void TearDown() override {
    control_.RequestStop();
    if (thread_.joinable()) thread_.join();
  }

  static void BoundWaits(int fd) {
    const timeval five{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &five, sizeof five);
  }

  // Runs the worker of the test's kind on its own thread.
  void Start() {
    WorkerSetup setup;
    ListenerInfo info;
    info.fd = listener_.get();
    auto local = LocalAddressOf(listener_.get());
    ASSERT_TRUE(local.ok());
    info.local = *local;
    info.address_known = info.port_known = true;
    setup.listeners.push_back(info);
    thread_ = std::thread([this, setup]() mutable {
      if (GetParam() == Kind::kUring) {
        UringWorker worker(config_, std::move(setup), &control_, &stats_);
        init_ = worker.Init();
        if (init_.ok()) worker.Run();
      } else {
        SyncWorker(config_, std::move(setup), &control_, &stats_).Run();
      }
    });
  }

  UniqueFd Connect() {
    UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    BoundWaits(c.get());
    EXPECT_EQ(::connect(c.get(), reinterpret_cast<const sockaddr*>(&address_), sizeof address_), 0);
    return c;
  }

  testing::TempDir dir_;
  UniqueFd listener_, receiver_;
  sockaddr_in address_{};
  WorkerConfig config_;
  Control control_{1};
  StatsRegistry stats_{1};
  absl::Status init_;  // the io_uring worker's Init
  std::thread thread_;
};

TEST_P(WorkersTest, HandsEveryConnectionToTheReceiverAndStops) {
  if (GetParam() == Kind::kUring && !ProbeKernelFeatures().FastPathUsable()) {
    GTEST_SKIP() << "io_uring lacks what the worker needs here";
  }
  Start();
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(Connect());
  // Each connection arrives as a socket the receiver can answer on.
  for (int i = 0; i < kClients; ++i) {
    SysResult<UniqueFd> conn = ReceiveFd(receiver_.get());
    ASSERT_TRUE(conn.ok()) << std::strerror(conn.error());
    ASSERT_EQ(::write(conn->get(), "k", 1), 1);
  }
  for (UniqueFd& c : clients) {
    char byte = 0;
    EXPECT_EQ(::read(c.get(), &byte, 1), 1);
    EXPECT_EQ(byte, 'k');
  }
  control_.RequestStop();
  thread_.join();
  ASSERT_TRUE(init_.ok()) << init_;
  const WorkerStats& st = stats_.worker(0);
  EXPECT_EQ(st.accepted.load(), static_cast<uint64_t>(kClients));
  EXPECT_EQ(st.dispatched.load(), static_cast<uint64_t>(kClients));
  // The engine's copies were closed: each client sees the end once the
  // receiver's copy goes too (here: already, after the answer).
  for (UniqueFd& c : clients) {
    char byte = 0;
    EXPECT_EQ(::read(c.get(), &byte, 1), 0);
  }
}

TEST_P(WorkersTest, ConnectionsForAnAbsentBackendAreClosedAtTheDeadlineAndCounted) {
  if (GetParam() == Kind::kUring && !ProbeKernelFeatures().FastPathUsable()) {
    GTEST_SKIP() << "io_uring lacks what the worker needs here";
  }
  config_.forced_path = dir_.File("nobody-here");
  config_.dispatch_timeout_ms = 100;
  Start();
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(Connect());
  // Each client sees its connection end (closed, not handed anywhere).
  for (UniqueFd& c : clients) {
    char byte = 0;
    EXPECT_LE(::read(c.get(), &byte, 1), 0);
  }
  control_.RequestStop();
  thread_.join();
  ASSERT_TRUE(init_.ok()) << init_;
  const WorkerStats& st = stats_.worker(0);
  EXPECT_EQ(st.accepted.load(), 3u);
  EXPECT_EQ(st.dispatched.load(), 0u);
  EXPECT_EQ(st.TotalDropped(), 3u);
}

INSTANTIATE_TEST_SUITE_P(BothWorkers, WorkersTest, ::testing::Values(Kind::kUring, Kind::kSync),
                         [](const ::testing::TestParamInfo<Kind>& param) {
                           return param.param == Kind::kUring ? "Uring" : "Sync";
                         });

}  // namespace
}  // namespace sbx
