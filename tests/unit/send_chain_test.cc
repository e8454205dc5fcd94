// SendChain on a real ring: real datagram sockets as backends, eventfds as
// connections, and what the receiver gets and the ring completes as the
// proof of the link and join rules.
#include "engine/dispatch/send_chain.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "engine/dispatch/uring_ops.h"
#include "engine/sys/clock.h"
#include "gtest/gtest.h"
#include "tests/unit/daemon_test_support.h"

namespace sbx {
namespace {

using testing::IsOpen;
using testing::NewConnectionFd;

constexpr uint32_t kSlots = 256;  // at least the connections a test adds
constexpr uint64_t kSecond = 1'000'000'000;

struct Completion {
  UringOp op;
  uint32_t slot;
  int res;
  bool operator==(const Completion&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Completion& c) {
  return os << "{op " << static_cast<int>(c.op) << ", slot " << c.slot << ", res " << c.res << "}";
}

// A receiver bound at a path and a socket connected to it, as a backend of
// the worker is.
struct Receiver {
  explicit Receiver(const std::string& path) : socket(testing::BindReceiver(path)) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    sender = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (::connect(sender.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    }
    backend.borrowed_fd = sender.get();
  }
  // Fills the receiver's queue with messages of no fds.
  void FillQueue() {
    while (::send(sender.get(), "x", 1, MSG_DONTWAIT) == 1) {
    }
    ASSERT_EQ(errno, EAGAIN);
  }
  // The number of fds in each message queued (closing them).
  std::vector<int> FdsPerMessage() {
    std::vector<int> counts;
    while (true) {
      char byte;
      iovec iov{&byte, 1};
      alignas(cmsghdr) unsigned char control[CMSG_SPACE(64 * sizeof(int))];
      msghdr hdr{};
      hdr.msg_iov = &iov;
      hdr.msg_iovlen = 1;
      hdr.msg_control = control;
      hdr.msg_controllen = sizeof(control);
      if (::recvmsg(socket.get(), &hdr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0) return counts;
      int n = 0;
      for (cmsghdr* c = CMSG_FIRSTHDR(&hdr); c != nullptr; c = CMSG_NXTHDR(&hdr, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const int fds = static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int k = 0; k < fds; ++k) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
          ::close(fd);
        }
        n += fds;
      }
      counts.push_back(n);
    }
  }

  UniqueFd socket;
  UniqueFd sender;
  Backend backend;
};

class SendChainTest : public ::testing::Test {
 protected:
  SendChainTest() : ring_(&enters_, [this](int err) { ring_error_ = err; }) {}

  void SetUp() override {
    const int err = ring_.Init(256, 1024, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    if (err == -ENOSYS || err == -EPERM) GTEST_SKIP() << "no io_uring here: " << err;
    ASSERT_EQ(err, 0);
    chain_ = std::make_unique<SendChain>(&ring_, kSlots);
  }
  void TearDown() override {
    for (int fd : conns_) {
      if (IsOpen(fd)) ::close(fd);
    }
    EXPECT_EQ(ring_error_, 0);
  }

  // Adds the next connection (its slot is its number) for `r`.
  int Add(Receiver& r, bool keep_open = false) {
    const auto slot = static_cast<uint32_t>(conns_.size());
    if (slot >= kSlots) {
      ADD_FAILURE() << "more connections than slots";
      return -1;
    }
    const int fd = NewConnectionFd();
    conns_.push_back(fd);
    chain_->Add(slot, fd, r.backend, keep_open);
    return fd;
  }
  // Runs what was prepared as the worker does, and returns the completions
  // once `sends` send completions are there.
  std::vector<Completion> Run(size_t sends) {
    ring_.RunLinked();
    std::vector<Completion> seen;
    size_t sent = 0;
    const uint64_t deadline = MonotonicNs() + 5 * kSecond;
    while (true) {
      const WorkerRing::Batch batch = ring_.TakeBatch();
      for (unsigned i = batch.first; i != batch.end; ++i) {
        const io_uring_cqe* cqe = ring_.At(i);
        seen.push_back({UringOpOf(cqe->user_data), UserDataIndex(cqe->user_data), cqe->res});
        sent += seen.back().op == UringOp::kSend;
      }
      ring_.Consume(batch);
      if (sent >= sends || MonotonicNs() > deadline) break;
      ring_.SubmitAndWait(1, kSecond / 10, 0);
    }
    EXPECT_EQ(sent, sends);
    return seen;
  }
  int OpenConnections() {
    int open = 0;
    for (int fd : conns_) open += IsOpen(fd);
    return open;
  }
  std::vector<Completion> Sends(const std::vector<Completion>& all) {
    std::vector<Completion> sends;
    for (const Completion& c : all) {
      if (c.op == UringOp::kSend) sends.push_back(c);
    }
    return sends;
  }

  testing::TempDir dir_;
  Counter enters_{0};
  int ring_error_ = 0;
  WorkerRing ring_;
  std::unique_ptr<SendChain> chain_;
  std::vector<int> conns_;
};

TEST_F(SendChainTest, OneFdPerMessageToAReceiverThatNeverAsked) {
  Receiver r(dir_.File("r"));
  for (int i = 0; i < 3; ++i) Add(r);
  const auto all = Run(3);
  EXPECT_EQ(all, (std::vector<Completion>{
                     {UringOp::kSend, 0, 1}, {UringOp::kSend, 1, 1}, {UringOp::kSend, 2, 1}}));
  EXPECT_EQ(r.FdsPerMessage(), (std::vector<int>{1, 1, 1}));
  EXPECT_EQ(OpenConnections(), 0);  // the linked closes ran, and posted nothing
  EXPECT_EQ(enters_.load(), 1u);    // one enter for all of it
}

TEST_F(SendChainTest, SendsJoinOneMessageUpToWhatTheReceiverTakes) {
  Receiver r(dir_.File("r"));
  r.backend.receiver.max_fds = 4;
  for (int i = 0; i < 6; ++i) Add(r);
  const auto all = Run(2);
  EXPECT_EQ(all, (std::vector<Completion>{{UringOp::kSend, 0, 1}, {UringOp::kSend, 4, 1}}));
  EXPECT_EQ(chain_->message(0).count, 4u);
  EXPECT_EQ(chain_->message(4).count, 2u);
  EXPECT_EQ(chain_->message(4).slots[1], 5u);
  EXPECT_EQ(r.FdsPerMessage(), (std::vector<int>{4, 2}));
  EXPECT_EQ(OpenConnections(), 0);
}

TEST_F(SendChainTest, AMessageHoldsNoMoreThanItsBatch) {
  Receiver r(dir_.File("r"));
  r.backend.receiver.max_fds = FdBatch::kFdsPerMessageLimit + 10;
  for (unsigned i = 0; i <= FdBatch::kFdsPerMessageLimit; ++i) Add(r);
  Run(2);
  EXPECT_EQ(r.FdsPerMessage(),
            (std::vector<int>{static_cast<int>(FdBatch::kFdsPerMessageLimit), 1}));
  EXPECT_EQ(OpenConnections(), 0);
}

TEST_F(SendChainTest, HeldConnectionsJoinButStayOpen) {
  Receiver r(dir_.File("r"));
  r.backend.receiver.max_fds = 4;
  for (int i = 0; i < 3; ++i) Add(r, /*keep_open=*/true);
  Add(r, /*keep_open=*/false);  // a message of its own: its fds are closed, the others' not
  EXPECT_EQ(Sends(Run(2)),
            (std::vector<Completion>{{UringOp::kSend, 0, 1}, {UringOp::kSend, 3, 1}}));
  EXPECT_EQ(r.FdsPerMessage(), (std::vector<int>{3, 1}));
  EXPECT_EQ(OpenConnections(), 3);
  EXPECT_FALSE(IsOpen(conns_[3]));
}

TEST_F(SendChainTest, AFullQueueCancelsTheRestOfTheChainUntried) {
  Receiver r(dir_.File("r"));
  ASSERT_NO_FATAL_FAILURE(r.FillQueue());
  for (int i = 0; i < 3; ++i) Add(r);
  EXPECT_EQ(Sends(Run(3)), (std::vector<Completion>{{UringOp::kSend, 0, -EAGAIN},
                                                    {UringOp::kSend, 1, -ECANCELED},
                                                    {UringOp::kSend, 2, -ECANCELED}}));
  EXPECT_EQ(OpenConnections(), 3);  // every close cancelled: still ours
}

TEST_F(SendChainTest, AFullQueueCancelsAHeldChainToo) {
  Receiver r(dir_.File("r"));
  r.backend.receiver.max_fds = 2;
  ASSERT_NO_FATAL_FAILURE(r.FillQueue());
  for (int i = 0; i < 4; ++i) Add(r, /*keep_open=*/true);
  EXPECT_EQ(Sends(Run(2)), (std::vector<Completion>{{UringOp::kSend, 0, -EAGAIN},
                                                    {UringOp::kSend, 2, -ECANCELED}}));
  EXPECT_EQ(OpenConnections(), 4);
}

TEST_F(SendChainTest, AnEntryPreparedInBetweenEndsTheChain) {
  Receiver r(dir_.File("r"));
  r.backend.receiver.max_fds = 4;
  ASSERT_NO_FATAL_FAILURE(r.FillQueue());
  Add(r);
  io_uring_prep_nop(ring_.Get());  // anything else: links are positional
  Add(r);
  // The second was tried on its own (no join, no link to the first).
  EXPECT_EQ(Sends(Run(2)),
            (std::vector<Completion>{{UringOp::kSend, 0, -EAGAIN}, {UringOp::kSend, 1, -EAGAIN}}));
  EXPECT_EQ(OpenConnections(), 2);
}

TEST_F(SendChainTest, AChainNeverSpansTwoSubmissions) {
  Receiver r(dir_.File("r"));
  r.backend.receiver.max_fds = 4;
  Add(r);
  ASSERT_TRUE(ring_.Submit());
  Add(r);
  Run(2);
  EXPECT_EQ(r.FdsPerMessage(), (std::vector<int>{1, 1}));
  EXPECT_EQ(OpenConnections(), 0);
}

TEST_F(SendChainTest, EachBackendHasAChainOfItsOwn) {
  Receiver full(dir_.File("full"));
  Receiver open(dir_.File("open"));
  ASSERT_NO_FATAL_FAILURE(full.FillQueue());
  Add(full);
  Add(open);
  Add(full);
  EXPECT_EQ(Sends(Run(3)), (std::vector<Completion>{{UringOp::kSend, 0, -EAGAIN},
                                                    {UringOp::kSend, 1, 1},
                                                    {UringOp::kSend, 2, -EAGAIN}}));
  EXPECT_EQ(open.FdsPerMessage(), (std::vector<int>{1}));
  EXPECT_EQ(OpenConnections(), 2);
}

TEST_F(SendChainTest, AFullSubmissionQueueNeverSeparatesASendFromItsClose) {
  // 140 sends and their closes take 280 of 256 entries: the queue is
  // submitted on the way, between two messages, never between a send and
  // the close linked to it (that close would then run even when the send
  // failed, and close a connection that is still ours).
  Receiver r(dir_.File("r"));
  constexpr int kConnections = 140;
  for (int i = 0; i < kConnections; ++i) Add(r);
  ASSERT_GE(ring_.submissions(), 1u);
  // The receiver's queue takes a few (net.unix.max_dgram_qlen), the rest fail.
  const auto sends = Sends(Run(kConnections));
  int delivered = 0;
  for (const Completion& c : sends) {
    delivered += c.res == 1;
    EXPECT_TRUE(c.res == 1 || c.res == -EAGAIN || c.res == -ECANCELED) << c;
  }
  EXPECT_EQ(static_cast<int>(r.FdsPerMessage().size()), delivered);
  EXPECT_EQ(OpenConnections(), kConnections - delivered);
}

}  // namespace
}  // namespace sbx
