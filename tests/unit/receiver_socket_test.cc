// The receiving socket at a path (socketbox-inetd, socketbox-bind-exec,
// socketbox-relay -s): bound by rename, never over a live socket or a file,
// removed only while still its own, and every failure named once.
#include "engine/core/receiver_socket.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "engine/core/unix_address.h"

namespace sbx {
namespace {

class ReceiverSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sbx-inetd-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/s.sock";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_, path_;
};

TEST_F(ReceiverSocketTest, BindsWithMode0660AndCloexec) {
  auto bound = BindReceiverSocket(path_);
  ASSERT_TRUE(bound.ok()) << bound.status();
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(::fcntl(bound->fd.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  int type = 0;
  socklen_t len = sizeof(type);
  ASSERT_EQ(::getsockopt(bound->fd.get(), SOL_SOCKET, SO_TYPE, &type, &len), 0);
  EXPECT_EQ(type, SOCK_DGRAM);
  // No temporary name is left behind.
  EXPECT_NE(::access((path_ + ".tmp" + std::to_string(::getpid())).c_str(), F_OK), 0);
}

TEST_F(ReceiverSocketTest, ReplacesStaleSocketFile) {
  {
    auto first = BindReceiverSocket(path_);
    ASSERT_TRUE(first.ok());
  }  // closed: stale
  auto second = BindReceiverSocket(path_);
  ASSERT_TRUE(second.ok()) << second.status();
}

TEST_F(ReceiverSocketTest, RefusesSocketInUse) {
  auto first = BindReceiverSocket(path_);
  ASSERT_TRUE(first.ok());
  auto second = BindReceiverSocket(path_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().message(),
            path_ + " is in use by a running process: Address already in use");
}

// The error's text appears once ("bind X: No such file or directory", not
// twice over), e.g. for socketbox-relay -s in a directory that is missing.
TEST_F(ReceiverSocketTest, BindFailureNamesTheErrorOnce) {
  const std::string missing = dir_ + "/missing/s.sock";
  auto bound = BindReceiverSocket(missing);
  ASSERT_FALSE(bound.ok());
  EXPECT_TRUE(absl::IsNotFound(bound.status())) << bound.status();
  EXPECT_EQ(bound.status().message(), "bind " + missing + ".tmp" + std::to_string(::getpid()) +
                                          ": No such file or directory");
}

TEST_F(ReceiverSocketTest, RefusesLiveStreamListener) {
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto address = MakeUnixAddress(path_);
  ASSERT_EQ(::bind(listener.get(), address->sockaddr_ptr(), address->len), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  EXPECT_FALSE(BindReceiverSocket(path_).ok());
}

TEST_F(ReceiverSocketTest, NeverClobbersRegularFile) {
  int fd = ::open(path_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  auto bound = BindReceiverSocket(path_);
  ASSERT_FALSE(bound.ok());
  EXPECT_NE(std::string(bound.status().message()).find("not a socket"), std::string::npos);
}

// A path is named escaped: a newline in it cannot start a log line.
TEST_F(ReceiverSocketTest, PathsAreNamedEscaped) {
  const std::string odd = dir_ + "/a\nsocketbox-inetd: forged";
  int fd = ::open(odd.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  auto bound = BindReceiverSocket(odd);
  ::unlink(odd.c_str());
  ASSERT_FALSE(bound.ok());
  const std::string message(bound.status().message());
  EXPECT_NE(message.find("/a\\x0asocketbox-inetd: forged exists and is not a socket"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST_F(ReceiverSocketTest, TooLongPathIsNamed) {
  auto bound = BindReceiverSocket(dir_ + "/" + std::string(120, 'x'));
  ASSERT_FALSE(bound.ok());
  EXPECT_NE(std::string(bound.status().message()).find("socket path"), std::string::npos);
}

TEST_F(ReceiverSocketTest, RemovesOnlyItsOwnFile) {
  auto first = BindReceiverSocket(path_);
  ASSERT_TRUE(first.ok());
  first->fd.Reset();  // now stale, so a newer instance replaces it
  auto second = BindReceiverSocket(path_);
  ASSERT_TRUE(second.ok());
  RemoveIfStillOurs(*first);
  EXPECT_EQ(::access(path_.c_str(), F_OK), 0);  // the newer one's file stays
  RemoveIfStillOurs(*second);
  EXPECT_NE(::access(path_.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace sbx
