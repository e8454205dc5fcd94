// SKBOX_SENDER_UIDS: parsing, and ReceiveFd refusing fds from other users
// over real datagram and stream socketpairs (the kernel stamps credentials).
#include "engine/core/sender_filter.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "engine/core/fd_passing.h"
#include "gtest/gtest.h"

namespace sbx {
namespace {

TEST(SenderFilterTest, Parse) {
  SenderFilter f;
  ASSERT_TRUE(SenderFilter::Parse("0", &f));
  EXPECT_TRUE(f.active());
  EXPECT_TRUE(f.Allows(0));
  EXPECT_FALSE(f.Allows(1));
  ASSERT_TRUE(SenderFilter::Parse("0,998,4294967294", &f));
  EXPECT_TRUE(f.Allows(998));
  EXPECT_TRUE(f.Allows(4294967294u));
  EXPECT_FALSE(f.Allows(999));
  std::string sixteen = "1";
  for (int i = 2; i <= 16; ++i) sixteen += "," + std::to_string(i);
  EXPECT_TRUE(SenderFilter::Parse(sixteen, &f));
  EXPECT_TRUE(f.Allows(16));
}

TEST(SenderFilterTest, MalformedFailsClosed) {
  std::string seventeen = "1";
  for (int i = 2; i <= 17; ++i) seventeen += "," + std::to_string(i);
  for (const std::string& bad :
       {std::string(""), std::string(","), std::string("0,"), std::string(",0"),
        std::string("root"), std::string("-1"), std::string("0 ,1"), std::string("4294967295"),
        std::string("99999999999"), seventeen}) {
    SenderFilter f;
    EXPECT_FALSE(SenderFilter::Parse(bad, &f)) << bad;
    EXPECT_TRUE(f.active()) << bad;
    EXPECT_FALSE(f.Allows(0)) << bad;
    EXPECT_FALSE(f.Allows(getuid())) << bad;
  }
}

TEST(SenderFilterTest, InactiveAllowsEveryone) {
  SenderFilter f;
  EXPECT_FALSE(f.active());
  EXPECT_TRUE(f.Allows(0));
  EXPECT_TRUE(f.Allows(12345));
}

class SenderFilterReceiveTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, GetParam() | SOCK_CLOEXEC, 0, fds), 0);
    sender_.Reset(fds[0]);
    receiver_.Reset(fds[1]);
    ASSERT_EQ(EnableSenderCredentials(receiver_.get()), 0);
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    conn_.Reset(pair[0]);
    other_end_.Reset(pair[1]);
  }
  // Sends conn_ from a child running as `uid`; its exit status.
  int SendAs(uid_t uid) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0) ::_exit(2);
      ::_exit(SendFd(sender_.get(), conn_.get()).ok() ? 0 : 3);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
  }
  // Receives on receiver_ through filter_, counting refusals in refused_.
  SysResult<UniqueFd> Receive(int flags = 0) {
    ReceiveOptions options;
    options.senders = &filter_;
    options.refused = &refused_;
    options.recv_flags = flags;
    return ReceiveFd(receiver_.get(), options);
  }
  UniqueFd sender_, receiver_, conn_, other_end_;
  SenderFilter filter_;
  uint64_t refused_ = 0;
};

TEST_P(SenderFilterReceiveTest, AllowedSenderPasses) {
  ASSERT_TRUE(SenderFilter::Parse("7," + std::to_string(getuid()), &filter_));
  ASSERT_TRUE(SendFd(sender_.get(), conn_.get()).ok());
  auto got = Receive();
  ASSERT_TRUE(got.ok()) << strerror(got.error());
  EXPECT_EQ(refused_, 0u);
}

TEST_P(SenderFilterReceiveTest, OtherUserIsRefusedAndItsFdClosed) {
  if (getuid() != 0) GTEST_SKIP() << "needs root to send as another user";
  ASSERT_TRUE(SenderFilter::Parse("0", &filter_));
  ASSERT_EQ(SendAs(65534), 0);                           // nobody: injected
  ASSERT_TRUE(SendFd(sender_.get(), conn_.get()).ok());  // root: real
  conn_.Reset();                                         // only received copies remain
  auto got = Receive();
  ASSERT_TRUE(got.ok()) << strerror(got.error());
  EXPECT_EQ(refused_, 1u);
  // The refused copy was closed: closing ours leaves the peer at EOF.
  got->Reset();
  char byte;
  EXPECT_EQ(::recv(other_end_.get(), &byte, 1, MSG_DONTWAIT), 0);
}

TEST_P(SenderFilterReceiveTest, NoCredentialsMeansRefused) {
  int off = 0;
  ASSERT_EQ(::setsockopt(receiver_.get(), SOL_SOCKET, SO_PASSCRED, &off, sizeof(off)), 0);
  ASSERT_TRUE(SenderFilter::Parse(std::to_string(getuid()), &filter_));
  ASSERT_TRUE(SendFd(sender_.get(), conn_.get()).ok());
  EXPECT_EQ(Receive(MSG_DONTWAIT).error(), EAGAIN);
  EXPECT_EQ(refused_, 1u);
}

INSTANTIATE_TEST_SUITE_P(DgramAndStream, SenderFilterReceiveTest,
                         ::testing::Values(SOCK_DGRAM, SOCK_STREAM));

}  // namespace
}  // namespace sbx
