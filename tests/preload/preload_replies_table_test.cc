// The preload's per-socket receiver protocol state, on real sockets: one
// entry per socket, a fresh one after close and fd reuse, errno kept, the
// table's limit, and many threads receiving on one socket at once with
// exact acks and a single hello.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "engine/core/fd_passing.h"
#include "engine/sys/unique_fd.h"
#include "preload/replies_table.h"

namespace sbx::preload {
namespace {

UniqueFd UnixDgram() { return UniqueFd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)); }

TEST(RepliesTableTest, OneEntryPerSocket) {
  UniqueFd a = UnixDgram();
  UniqueFd b = UnixDgram();
  const SharedReplies first = RepliesFor(a.get());
  ASSERT_NE(first.replies, nullptr);
  ASSERT_NE(first.mutex, nullptr);
  EXPECT_EQ(RepliesFor(a.get()).replies, first.replies);
  EXPECT_NE(RepliesFor(b.get()).replies, first.replies);
  EXPECT_EQ(first.replies->capabilities().max_fds, 1);
  EXPECT_TRUE(first.replies->capabilities().acks);
}

TEST(RepliesTableTest, NotASocketGetsNoneAndErrnoIsKept) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  errno = EINTR;
  EXPECT_EQ(RepliesFor(pipe_fds[0]).replies, nullptr);
  EXPECT_EQ(RepliesFor(-1).replies, nullptr);
  UniqueFd s = UnixDgram();
  EXPECT_NE(RepliesFor(s.get()).replies, nullptr);
  EXPECT_EQ(errno, EINTR);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

// An autobound sender connected to the receiver, and what it was told.
struct Sender {
  UniqueFd fd;
  int hellos = 0;
  uint32_t acked = 0;
  void Read() {
    unsigned char buf[64];
    ssize_t n;
    while ((n = ::recv(fd.get(), buf, sizeof(buf), MSG_DONTWAIT)) >= 0) {
      ReceiverMessage m;
      ASSERT_TRUE(DecodeReceiverMessage(buf, static_cast<size_t>(n), &m));
      if (m.kind == ReceiverMessageKind::kHello) ++hellos;
      if (m.kind == ReceiverMessageKind::kAck) acked += m.count;
    }
  }
};

class RepliesTableSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(::mkdtemp(dir_), nullptr);
    path_ = std::string(dir_) + "/r.sock";
    receiver_ = UnixDgram();
    address_ = MakeUnixAddress(path_).value();
    ASSERT_EQ(::bind(receiver_.get(), address_.sockaddr_ptr(), address_.len), 0);
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_);
  }
  Sender NewSender() {
    Sender s{UnixDgram()};
    sa_family_t family = AF_UNIX;  // autobind
    EXPECT_EQ(::bind(s.fd.get(), reinterpret_cast<sockaddr*>(&family), sizeof(family)), 0);
    EXPECT_EQ(::connect(s.fd.get(), address_.sockaddr_ptr(), address_.len), 0);
    return s;
  }
  void Send(const Sender& s) {
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    ASSERT_TRUE(SendFd(s.fd.get(), pair[0]).ok());
    ::close(pair[0]);
    ::close(pair[1]);
  }
  SysResult<UniqueFd> Receive(int flags = 0) {
    const SharedReplies shared = RepliesFor(receiver_.get());
    ReceiveOptions options;
    options.recv_flags = flags;
    options.replies = shared.replies;
    options.replies_mutex = shared.mutex;
    return ReceiveFd(receiver_.get(), options);
  }

  char dir_[32] = "/tmp/sbx-replies-XXXXXX";
  std::string path_;
  UnixAddress address_;
  UniqueFd receiver_;
};

TEST_F(RepliesTableSocketTest, ReusedFdStartsAfresh) {
  Sender s = NewSender();
  Send(s);
  ASSERT_TRUE(Receive().ok());
  s.Read();  // before the connect below, which empties the sender's queue
  ASSERT_EQ(s.hellos, 1);
  // The program closes its socket; a new one gets the same number.
  const int fd = receiver_.get();
  ::unlink(path_.c_str());
  receiver_.Reset();
  receiver_ = UnixDgram();
  ASSERT_EQ(receiver_.get(), fd);
  ASSERT_EQ(::bind(receiver_.get(), address_.sockaddr_ptr(), address_.len), 0);
  ASSERT_EQ(::connect(s.fd.get(), address_.sockaddr_ptr(), address_.len), 0);
  Send(s);
  ASSERT_TRUE(Receive().ok());
  s.Read();
  EXPECT_EQ(s.hellos, 2);  // the new socket greets the sender again
  EXPECT_EQ(s.acked, 2u);
}

// Threads of one program accept() on one socket (nginx's and Apache's
// workers do): the shared state stays exact (without the mutex the counts
// race and this fails most runs).
TEST_F(RepliesTableSocketTest, ManyThreadsOneSocket) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::vector<Sender> senders;
  for (int i = 0; i < 3; ++i) senders.push_back(NewSender());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        if (!Receive().ok()) ++failures;
      }
    });
  }
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    Sender& s = senders[i % senders.size()];
    Send(s);
    // Keep the replies moving: the receiver's sends never block.
    if (i % 8 == 0) {
      for (Sender& r : senders) r.Read();
    }
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  uint32_t total = 0;
  for (Sender& s : senders) {
    s.Read();
    EXPECT_EQ(s.hellos, 1);
    total += s.acked;
  }
  // Acks that met a full queue are carried, not lost: one more message
  // from each sender flushes what is still owed.
  for (Sender& s : senders) Send(s);
  for (size_t i = 0; i < senders.size(); ++i) ASSERT_TRUE(Receive().ok());
  total = 0;
  for (Sender& s : senders) {
    s.Read();
    total += s.acked;
  }
  EXPECT_EQ(total, static_cast<uint32_t>(kThreads * kPerThread) + senders.size());
}

TEST(RepliesTableLimitTest, FullTableServesWithoutTheProtocol) {
  std::vector<UniqueFd> sockets;
  bool full = false;
  for (int i = 0; i < 64 && !full; ++i) {
    sockets.push_back(UnixDgram());
    full = RepliesFor(sockets.back().get()).replies == nullptr;
  }
  EXPECT_TRUE(full) << "the table has a limit";
  // A closed socket frees its entry for the next.
  sockets.front().Reset();
  sockets.back() = UnixDgram();
  EXPECT_NE(RepliesFor(sockets.back().get()).replies, nullptr);
}

}  // namespace
}  // namespace sbx::preload
