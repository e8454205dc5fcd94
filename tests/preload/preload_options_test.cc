// TCP options carried from a replaced listener to accepted sockets, on real
// kernel sockets.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/sys/unique_fd.h"
#include "preload/socket_options.h"

namespace sbx::preload {
namespace {

int GetInt(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof(v);
  EXPECT_EQ(getsockopt(fd, level, name, &v, &len), 0);
  return v;
}

void SetInt(int fd, int level, int name, int value) {
  ASSERT_EQ(setsockopt(fd, level, name, &value, sizeof(value)), 0);
}

TEST(OptionSetTest, CapturesOnlyWhatDiffersFromAFreshSocket) {
  UniqueFd fresh(socket(AF_INET6, SOCK_STREAM, 0));
  ASSERT_TRUE(fresh);
  EXPECT_TRUE(OptionSet::CaptureChanged(fresh.get(), AF_INET6).empty());

  UniqueFd tcp(socket(AF_INET6, SOCK_STREAM, 0));
  SetInt(tcp.get(), IPPROTO_TCP, TCP_NODELAY, 1);
  SetInt(tcp.get(), SOL_SOCKET, SO_KEEPALIVE, 1);
  SetInt(tcp.get(), IPPROTO_TCP, TCP_KEEPIDLE, 77);
  SetInt(tcp.get(), SOL_SOCKET, SO_RCVBUF, 20000);
  const OptionSet set = OptionSet::CaptureChanged(tcp.get(), AF_INET6);
  int v = 0;
  EXPECT_TRUE(set.Has(IPPROTO_TCP, TCP_NODELAY, &v));
  EXPECT_EQ(v, 1);
  EXPECT_TRUE(set.Has(IPPROTO_TCP, TCP_KEEPIDLE, &v));
  EXPECT_EQ(v, 77);
  EXPECT_TRUE(set.Has(SOL_SOCKET, SO_RCVBUF, &v));
  EXPECT_EQ(v, 20000);  // read back doubled, stored as set
  EXPECT_FALSE(set.Has(IPPROTO_TCP, TCP_KEEPCNT, &v));

  // Applied to another socket, it reads back as on the original.
  UniqueFd other(socket(AF_INET, SOCK_STREAM, 0));
  set.ApplyTo(other.get());
  EXPECT_EQ(GetInt(other.get(), IPPROTO_TCP, TCP_NODELAY), 1);
  EXPECT_EQ(GetInt(other.get(), SOL_SOCKET, SO_KEEPALIVE), 1);
  EXPECT_EQ(GetInt(other.get(), IPPROTO_TCP, TCP_KEEPIDLE), 77);
  EXPECT_EQ(GetInt(other.get(), SOL_SOCKET, SO_RCVBUF), GetInt(tcp.get(), SOL_SOCKET, SO_RCVBUF));
}

TEST(OptionSetTest, RecordAnswersTcpAndIpLevelsAndInheritedSocketOptions) {
  OptionSet set;
  const int one = 1;
  const int seconds = 30;
  EXPECT_TRUE(set.Record(IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof(seconds)));
  EXPECT_TRUE(set.Record(IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
  EXPECT_TRUE(set.Record(IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)));
  EXPECT_TRUE(set.Record(IPPROTO_IP, IP_TOS, &one, sizeof(one)));
  EXPECT_TRUE(set.Record(SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)));
  linger l{1, 5};
  EXPECT_TRUE(set.Record(SOL_SOCKET, SO_LINGER, &l, sizeof(l)));
  // The Unix socket's own business.
  EXPECT_FALSE(set.Record(SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
  EXPECT_FALSE(set.Record(SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)));

  int v = 0;
  EXPECT_TRUE(set.Has(IPPROTO_TCP, TCP_NODELAY, &v));
  EXPECT_FALSE(set.Has(IPPROTO_TCP, TCP_DEFER_ACCEPT, &v));  // listener-only: dropped

  UniqueFd tcp(socket(AF_INET6, SOCK_STREAM, 0));
  set.ApplyTo(tcp.get());
  EXPECT_EQ(GetInt(tcp.get(), IPPROTO_TCP, TCP_NODELAY), 1);
  EXPECT_EQ(GetInt(tcp.get(), SOL_SOCKET, SO_KEEPALIVE), 1);
  linger got{};
  socklen_t len = sizeof(got);
  ASSERT_EQ(getsockopt(tcp.get(), SOL_SOCKET, SO_LINGER, &got, &len), 0);
  EXPECT_EQ(got.l_onoff, 1);
  EXPECT_EQ(got.l_linger, 5);
}

TEST(OptionSetTest, ShortValuesAreNotRecorded) {
  OptionSet set;
  const char byte = 1;
  EXPECT_TRUE(set.Record(IPPROTO_TCP, TCP_NODELAY, &byte, 1));  // answered...
  int v = 0;
  EXPECT_FALSE(set.Has(IPPROTO_TCP, TCP_NODELAY, &v));  // ...but not kept
  EXPECT_TRUE(set.Record(IPPROTO_TCP, TCP_NODELAY, nullptr, 4));
  EXPECT_TRUE(set.empty());
}

}  // namespace
}  // namespace sbx::preload
