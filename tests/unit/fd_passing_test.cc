// The "A" protocol over real socketpairs and datagram sockets.
#include "engine/core/fd_passing.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/fd_test_support.h"

namespace sbx {
namespace {

class FdPassingTest : public ::testing::TestWithParam<int> {};

TEST_P(FdPassingTest, RoundTripSendsOneByteAndOneFd) {
  const int baseline = OpenFdCount();
  {
    Pair channel = SocketPair(GetParam());
    Pair conn = SocketPair(SOCK_STREAM);  // stands in for a TCP connection
    ASSERT_TRUE(SendFd(channel.a.get(), conn.a.get()).ok());
    auto got = ReceiveFd(channel.b.get());
    ASSERT_TRUE(got.ok()) << strerror(got.error());
    EXPECT_EQ(Inode(got->get()), Inode(conn.a.get()));
    EXPECT_EQ(::fcntl(got->get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  }
  EXPECT_EQ(OpenFdCount(), baseline);
}

INSTANTIATE_TEST_SUITE_P(ChannelTypes, FdPassingTest,
                         ::testing::Values(SOCK_DGRAM, SOCK_STREAM, SOCK_SEQPACKET),
                         [](const auto& param_info) {
                           return param_info.param == SOCK_DGRAM    ? std::string("Dgram")
                                  : param_info.param == SOCK_STREAM ? std::string("Stream")
                                                                    : std::string("Seqpacket");
                         });

TEST(FdPassingWireTest, SenderWritesExactlyOneZeroByte) {
  Pair channel = SocketPair(SOCK_DGRAM);
  Pair conn = SocketPair(SOCK_STREAM);
  ASSERT_TRUE(SendFd(channel.a.get(), conn.a.get()).ok());
  unsigned char buf[8];
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * 4)];
  iovec iov{buf, sizeof(buf)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ASSERT_EQ(::recvmsg(channel.b.get(), &msg, MSG_CMSG_CLOEXEC), 1);
  EXPECT_EQ(buf[0], 0);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->cmsg_type, SCM_RIGHTS);
  EXPECT_EQ(c->cmsg_len, CMSG_LEN(sizeof(int)));
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  ::close(fd);
  EXPECT_EQ(CMSG_NXTHDR(&msg, c), nullptr);
}

TEST(FdPassingWireTest, AnyPayloadLengthAndExtraFdsAreClosed) {
  const int baseline = OpenFdCount();
  {
    Pair channel = SocketPair(SOCK_DGRAM);
    Pair c1 = SocketPair(SOCK_STREAM);
    Pair c2 = SocketPair(SOCK_STREAM);
    Pair c3 = SocketPair(SOCK_STREAM);
    SendRaw(channel.a.get(), std::string(300, 'x'), {c1.a.get(), c2.a.get(), c3.a.get()});
    SendRaw(channel.a.get(), "ab", {c2.b.get()});
    auto first = ReceiveFd(channel.b.get());
    ASSERT_TRUE(first.ok());
    EXPECT_EQ(Inode(first->get()), Inode(c1.a.get()));
    auto second = ReceiveFd(channel.b.get());
    ASSERT_TRUE(second.ok());
    EXPECT_EQ(Inode(second->get()), Inode(c2.b.get()));
  }
  EXPECT_EQ(OpenFdCount(), baseline);
}

TEST(FdPassingWireTest, TruncatedControlDataStillYieldsFirstFdAndLeaksNothing) {
  const int baseline = OpenFdCount();
  {
    Pair channel = SocketPair(SOCK_DGRAM);
    std::vector<Pair> conns(100);
    std::vector<int> fds;
    for (Pair& p : conns) {
      p = SocketPair(SOCK_STREAM);
      fds.push_back(p.a.get());
    }
    // More fds than ReceiveFd's control buffer holds: MSG_CTRUNC.
    SendRaw(channel.a.get(), "x", fds);
    auto got = ReceiveFd(channel.b.get());
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(Inode(got->get()), Inode(conns[0].a.get()));
  }
  EXPECT_EQ(OpenFdCount(), baseline);
}

TEST(FdPassingWireTest, MessagesWithoutFdsAreSkipped) {
  Pair channel = SocketPair(SOCK_DGRAM);
  Pair conn = SocketPair(SOCK_STREAM);
  SendRaw(channel.a.get(), "no fd here", {});
  SendRaw(channel.a.get(), "", {});
  ASSERT_TRUE(SendFd(channel.a.get(), conn.a.get()).ok());
  auto got = ReceiveFd(channel.b.get());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Inode(got->get()), Inode(conn.a.get()));
}

TEST(FdPassingWireTest, StrictLevelsRejectWrongFdTypes) {
  const int baseline = OpenFdCount();
  {
    Pair channel = SocketPair(SOCK_DGRAM);
    Pair dgram = SocketPair(SOCK_DGRAM);
    UniqueFd file(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    UniqueFd netlink(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0));
    Pair tcp_pair = TcpPair();
    const UniqueFd& tcp = tcp_pair.b;
    ASSERT_TRUE(netlink.valid());
    ASSERT_TRUE(tcp.valid());
    EXPECT_FALSE(FdPassesStrictLevel(file.get(), StrictLevel::kStream));
    EXPECT_TRUE(FdPassesStrictLevel(file.get(), StrictLevel::kAny));
    EXPECT_FALSE(FdPassesStrictLevel(dgram.a.get(), StrictLevel::kStream));
    EXPECT_TRUE(FdPassesStrictLevel(tcp.get(), StrictLevel::kStreamInetUnix));
    EXPECT_TRUE(FdPassesStrictLevel(channel.a.get(), StrictLevel::kAny));

    // Level 2 (default): the file and the datagram socket are skipped and
    // closed; the TCP socket comes through.
    uint64_t rejected = 0;
    ASSERT_TRUE(SendFd(channel.a.get(), file.get()).ok());
    ASSERT_TRUE(SendFd(channel.a.get(), dgram.a.get()).ok());
    ASSERT_TRUE(SendFd(channel.a.get(), tcp.get()).ok());
    auto got = ReceiveFd(channel.b.get(), {StrictLevel::kStreamInetUnix, 0, &rejected});
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(Inode(got->get()), Inode(tcp.get()));
    EXPECT_EQ(rejected, 2u);

    // Level 0 takes anything.
    ASSERT_TRUE(SendFd(channel.a.get(), file.get()).ok());
    auto any = ReceiveFd(channel.b.get(), {StrictLevel::kAny, 0, nullptr});
    ASSERT_TRUE(any.ok());
    EXPECT_EQ(Inode(any->get()), Inode(file.get()));

    // Level 1 takes a stream socket of any family but not a datagram one.
    ASSERT_TRUE(SendFd(channel.a.get(), dgram.a.get()).ok());
    auto none = ReceiveFd(channel.b.get(), {StrictLevel::kStream, MSG_DONTWAIT, nullptr});
    EXPECT_EQ(none.error(), EAGAIN);
  }
  EXPECT_EQ(OpenFdCount(), baseline);
}

// Levels 1 and 2 take connections only: a listening or never connected
// stream socket (TCP or Unix) is not one, whatever its type says.
TEST(FdPassingWireTest, StrictLevelsRejectListeningAndUnconnectedSockets) {
  const int baseline = OpenFdCount();
  {
    char dir[] = "/tmp/sbx-strict-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/listener.sock";
    UniqueFd unix_listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto address = MakeUnixAddress(path);
    ASSERT_TRUE(address.ok());
    ASSERT_EQ(::bind(unix_listener.get(), address->sockaddr_ptr(), address->len), 0);
    ASSERT_EQ(::listen(unix_listener.get(), 1), 0);
    UniqueFd unix_connected(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::connect(unix_connected.get(), address->sockaddr_ptr(), address->len), 0);
    UniqueFd unix_unconnected(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    UniqueFd tcp_unconnected(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    UniqueFd tcp_listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::listen(tcp_listener.get(), 1), 0);  // auto-bound to a free port
    Pair tcp = TcpPair();
    Pair stream = SocketPair(SOCK_STREAM);

    struct Case {
      const char* what;
      int fd;
      bool connection;
    };
    const Case cases[] = {
        {"TCP listener", tcp_listener.get(), false},
        {"unconnected TCP socket", tcp_unconnected.get(), false},
        {"Unix stream listener", unix_listener.get(), false},
        {"unconnected Unix stream socket", unix_unconnected.get(), false},
        {"accepted TCP connection", tcp.b.get(), true},
        {"connecting end of a TCP connection", tcp.a.get(), true},
        {"connected Unix stream socket", unix_connected.get(), true},
        {"stream socketpair end", stream.a.get(), true},
    };
    for (const Case& c : cases) {
      EXPECT_EQ(FdPassesStrictLevel(c.fd, StrictLevel::kStreamInetUnix), c.connection) << c.what;
      EXPECT_EQ(FdPassesStrictLevel(c.fd, StrictLevel::kStream), c.connection) << c.what;
      EXPECT_TRUE(FdPassesStrictLevel(c.fd, StrictLevel::kAny)) << c.what;
    }

    // Received: the four non-connections are closed and skipped, the
    // connection behind them comes through.
    Pair channel = SocketPair(SOCK_DGRAM);
    for (const Case& c : cases) {
      if (!c.connection) {
        ASSERT_TRUE(SendFd(channel.a.get(), c.fd).ok());
      }
    }
    ASSERT_TRUE(SendFd(channel.a.get(), tcp.b.get()).ok());
    uint64_t rejected = 0;
    auto got = ReceiveFd(channel.b.get(), {StrictLevel::kStreamInetUnix, 0, &rejected});
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(Inode(got->get()), Inode(tcp.b.get()));
    EXPECT_EQ(rejected, 4u);
    ::unlink(path.c_str());
    ::rmdir(dir);
  }
  EXPECT_EQ(OpenFdCount(), baseline);
}

TEST(FdPassingWireTest, NonBlockingEmptyQueueIsEagain) {
  Pair channel = SocketPair(SOCK_DGRAM);
  auto got = ReceiveFd(channel.b.get(), {StrictLevel::kStreamInetUnix, MSG_DONTWAIT, nullptr});
  EXPECT_EQ(got.error(), EAGAIN);
}

TEST(FdPassingWireTest, StreamPeerGoneIsEnolink) {
  for (int type : {SOCK_STREAM, SOCK_SEQPACKET}) {
    Pair channel = SocketPair(type);
    channel.a.Reset();
    EXPECT_EQ(ReceiveFd(channel.b.get()).error(), ENOLINK) << type;
  }
}

// A seqpacket channel carries empty records; only a sender that is gone
// ends it (found by tests/fuzz/receive_fuzzer.cc: an empty record used to
// read as ENOLINK, the sender still there and connections still queued).
TEST(FdPassingWireTest, EmptySeqpacketRecordIsNotTheEnd) {
  Pair channel = SocketPair(SOCK_SEQPACKET);
  Pair conn = SocketPair(SOCK_STREAM);
  SendRaw(channel.a.get(), "", {});
  ASSERT_TRUE(SendFd(channel.a.get(), conn.a.get()).ok());
  auto got = ReceiveFd(channel.b.get(), {StrictLevel::kStreamInetUnix, MSG_DONTWAIT, nullptr});
  ASSERT_TRUE(got.ok()) << got.error();
  EXPECT_EQ(Inode(got->get()), Inode(conn.a.get()));
  SendRaw(channel.a.get(), "", {});
  EXPECT_EQ(ReceiveFd(channel.b.get(), {StrictLevel::kAny, MSG_DONTWAIT, nullptr}).error(), EAGAIN);
  channel.a.Reset();
  EXPECT_EQ(ReceiveFd(channel.b.get(), {StrictLevel::kAny, MSG_DONTWAIT, nullptr}).error(),
            ENOLINK);
}

TEST(FdPassingWireTest, SendToPathOfDatagramListener) {
  char dir[] = "/tmp/sbx-fdpass-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/backend.sock";
  auto address = MakeUnixAddress(path);
  ASSERT_TRUE(address.ok());
  UniqueFd listener(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::bind(listener.get(), address->sockaddr_ptr(), address->len), 0);
  UniqueFd sender(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  Pair conn = SocketPair(SOCK_STREAM);
  ASSERT_TRUE(SendFd(sender.get(), conn.a.get(), MSG_DONTWAIT, &address.value()).ok());
  auto got = ReceiveFd(listener.get());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Inode(got->get()), Inode(conn.a.get()));
  // A missing path is an error the caller sees, not silence.
  auto missing = MakeUnixAddress(std::string(dir) + "/nobody.sock");
  EXPECT_EQ(SendFd(sender.get(), conn.a.get(), MSG_DONTWAIT, &missing.value()).error(), ENOENT);
  ::unlink(path.c_str());
  ::rmdir(dir);
}

// ReceiveFds: every fd of one message, in order.
TEST(ReceiveFdsTest, TakesEveryFdOfOneMessage) {
  const int baseline = OpenFdCount();
  {
    Pair channel = SocketPair(SOCK_DGRAM);
    Pair c1 = SocketPair(SOCK_STREAM);
    Pair c2 = SocketPair(SOCK_STREAM);
    Pair c3 = SocketPair(SOCK_STREAM);
    SendRaw(channel.a.get(), std::string(1, '\0'), {c1.a.get(), c2.a.get(), c3.a.get()});
    ASSERT_TRUE(SendFd(channel.a.get(), c1.b.get()).ok());
    UniqueFd got[kMaxFdsPerMessage];
    auto first = ReceiveFds(channel.b.get(), got, kMaxFdsPerMessage);
    ASSERT_TRUE(first.ok()) << strerror(first.error());
    ASSERT_EQ(*first, 3u);
    EXPECT_EQ(Inode(got[0].get()), Inode(c1.a.get()));
    EXPECT_EQ(Inode(got[1].get()), Inode(c2.a.get()));
    EXPECT_EQ(Inode(got[2].get()), Inode(c3.a.get()));
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(::fcntl(got[i].get(), F_GETFD), FD_CLOEXEC);
    // One message per call: the next one is not merged in.
    auto second = ReceiveFds(channel.b.get(), got, kMaxFdsPerMessage);
    ASSERT_TRUE(second.ok());
    ASSERT_EQ(*second, 1u);
    EXPECT_EQ(Inode(got[0].get()), Inode(c1.b.get()));
  }
  EXPECT_EQ(OpenFdCount(), baseline);
}

// The strict level judges each fd: the rejected ones are closed and counted,
// the good ones move up; a message with none left is skipped.
TEST(ReceiveFdsTest, StrictLevelKeepsOnlyTheGoodFdsOfAMessage) {
  const int baseline = OpenFdCount();
  {
    Pair channel = SocketPair(SOCK_DGRAM);
    UniqueFd file(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    Pair dgram = SocketPair(SOCK_DGRAM);
    Pair tcp1 = TcpPair();
    Pair tcp2 = TcpPair();
    SendRaw(channel.a.get(), "x", {file.get(), dgram.a.get()});  // nothing good
    SendRaw(channel.a.get(), "x", {file.get(), tcp1.b.get(), dgram.a.get(), tcp2.b.get()});
    uint64_t rejected = 0;
    UniqueFd got[8];
    auto n = ReceiveFds(channel.b.get(), got, 8, {StrictLevel::kStreamInetUnix, 0, &rejected});
    ASSERT_TRUE(n.ok());
    ASSERT_EQ(*n, 2u);
    EXPECT_EQ(Inode(got[0].get()), Inode(tcp1.b.get()));
    EXPECT_EQ(Inode(got[1].get()), Inode(tcp2.b.get()));
    EXPECT_FALSE(got[2].valid());
    EXPECT_EQ(rejected, 4u);
    EXPECT_EQ(
        ReceiveFds(channel.b.get(), got, 8, {StrictLevel::kAny, MSG_DONTWAIT, nullptr}).error(),
        EAGAIN);
  }
  EXPECT_EQ(OpenFdCount(), baseline);
}

// Past `max`, fds are closed unread: max 1 is ReceiveFd, which keeps the
// first fd of a message and judges only that one, as it always did.
TEST(ReceiveFdsTest, FdsBeyondMaxAreClosed) {
  const int baseline = OpenFdCount();
  {
    Pair channel = SocketPair(SOCK_DGRAM);
    std::vector<Pair> conns(5);
    std::vector<int> fds;
    for (Pair& p : conns) {
      p = SocketPair(SOCK_STREAM);
      fds.push_back(p.a.get());
    }
    SendRaw(channel.a.get(), "x", fds);
    UniqueFd got[5];
    auto n = ReceiveFds(channel.b.get(), got, 2);
    ASSERT_TRUE(n.ok());
    ASSERT_EQ(*n, 2u);
    EXPECT_EQ(Inode(got[0].get()), Inode(conns[0].a.get()));
    EXPECT_EQ(Inode(got[1].get()), Inode(conns[1].a.get()));
    EXPECT_FALSE(got[2].valid());

    UniqueFd file(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    SendRaw(channel.a.get(), "x", {file.get(), conns[0].a.get()});
    uint64_t rejected = 0;
    auto one = ReceiveFd(channel.b.get(), {StrictLevel::kStreamInetUnix, MSG_DONTWAIT, &rejected});
    EXPECT_EQ(one.error(), EAGAIN);
    EXPECT_EQ(rejected, 1u);
    EXPECT_EQ(ReceiveFds(channel.b.get(), got, 0).error(), EINVAL);
  }
  EXPECT_EQ(OpenFdCount(), baseline);
}

TEST(UnixAddressTest, Limits) {
  EXPECT_TRUE(MakeUnixAddress(std::string(107, 'a')).ok());
  EXPECT_EQ(MakeUnixAddress(std::string(108, 'a')).error(), ENAMETOOLONG);
  EXPECT_EQ(MakeUnixAddress("").error(), EINVAL);
  EXPECT_EQ(MakeUnixAddress(std::string("a\0b", 3)).error(), EINVAL);
  EXPECT_EQ(MakeUnixAddress("/run/x.sock")->path(), "/run/x.sock");
}

}  // namespace
}  // namespace sbx
