// The registration protocol: encodings, and a real SEQPACKET exchange.
#include "engine/core/registration.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "engine/core/fd_passing.h"
#include "engine/core/unix_address.h"
#include "gtest/gtest.h"

namespace sbx {
namespace {

TEST(RegistrationCodecTest, RequestIsBigEndianGroup) {
  const auto req = EncodeRegisterRequest(0x01020304);
  const std::array<uint8_t, 8> expected = {1, 0, 0, 0, 1, 2, 3, 4};
  EXPECT_EQ(req, expected);
  EXPECT_EQ(DecodeRegisterRequest(req.data(), req.size()), 0x01020304u);
}

TEST(RegistrationCodecTest, RejectsMalformedRequests) {
  const uint8_t wrong_cmd[8] = {2, 0, 0, 0, 0, 0, 0, 1};
  const uint8_t reserved[8] = {1, 0, 1, 0, 0, 0, 0, 1};
  const uint8_t ok[8] = {1, 0, 0, 0, 0, 0, 0, 1};
  EXPECT_FALSE(DecodeRegisterRequest(wrong_cmd, 8));
  EXPECT_FALSE(DecodeRegisterRequest(reserved, 8));
  EXPECT_FALSE(DecodeRegisterRequest(ok, 7));
  EXPECT_FALSE(DecodeRegisterRequest(ok, 9));
  EXPECT_FALSE(DecodeRegisterRequest(nullptr, 8));
}

TEST(RegistrationCodecTest, Response) {
  const auto yes = EncodeRegisterResponse(true);
  const auto no = EncodeRegisterResponse(false);
  EXPECT_EQ(yes[0], 0x80);
  EXPECT_EQ(DecodeRegisterResponse(yes.data(), 4), true);
  EXPECT_EQ(DecodeRegisterResponse(no.data(), 4), false);
  EXPECT_FALSE(DecodeRegisterResponse(yes.data(), 3));
}

class RegistrationServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/sbx-reg-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/ctl.sock";
    auto address = MakeUnixAddress(path_);
    listener_.Reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::bind(listener_.get(), address->sockaddr_ptr(), address->len), 0);
    ASSERT_EQ(::listen(listener_.get(), 4), 0);
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_, path_;
  UniqueFd listener_;
};

TEST_F(RegistrationServerTest, RegistersThenReceivesSocketsUntilServerLeaves) {
  int sock_pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock_pair), 0);
  UniqueFd conn_a(sock_pair[0]), conn_b(sock_pair[1]);
  uint32_t seen_group = 0;
  std::thread server([&] {
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    uint8_t req[16];
    const ssize_t n = ::recv(client.get(), req, sizeof(req), 0);
    seen_group = DecodeRegisterRequest(req, static_cast<size_t>(n)).value_or(0);
    const auto resp = EncodeRegisterResponse(true);
    ::send(client.get(), resp.data(), resp.size(), MSG_NOSIGNAL);
    (void)SendFd(client.get(), conn_a.get());
    // Leaving closes the connection: the client must see ENOLINK.
  });
  auto fd = RegisterWithServer(path_, 77);
  ASSERT_TRUE(fd.ok()) << strerror(fd.error());
  auto got = ReceiveFd(fd->get());
  ASSERT_TRUE(got.ok());
  server.join();
  EXPECT_EQ(seen_group, 77u);
  EXPECT_EQ(ReceiveFd(fd->get()).error(), ENOLINK);
}

TEST_F(RegistrationServerTest, RefusalAndGarbageResponses) {
  for (const std::string& response : {std::string("\0\0\0\0", 4), std::string("\x80", 1)}) {
    std::thread server([&] {
      UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      uint8_t req[16];
      (void)::recv(client.get(), req, sizeof(req), 0);
      ::send(client.get(), response.data(), response.size(), MSG_NOSIGNAL);
    });
    auto fd = RegisterWithServer(path_, 1);
    server.join();
    EXPECT_EQ(fd.error(), response.size() == 4 ? EACCES : EPROTO);
  }
}

TEST_F(RegistrationServerTest, SilentServerTimesOut) {
  // The kernel completes the connection from the backlog; nobody answers.
  auto fd = RegisterWithServer(path_, 1, /*timeout_ms=*/100);
  EXPECT_EQ(fd.error(), ETIMEDOUT);
}

TEST_F(RegistrationServerTest, NoServerIsAnError) {
  EXPECT_EQ(RegisterWithServer(dir_ + "/absent.sock", 1).error(), ENOENT);
  EXPECT_EQ(RegisterWithServer(std::string(200, 'x'), 1).error(), ENAMETOOLONG);
}

}  // namespace
}  // namespace sbx
