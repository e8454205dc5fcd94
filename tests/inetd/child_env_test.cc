#include "inetd/child_env.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "engine/sys/unique_fd.h"

namespace sbx::inetd {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

SocketAddress Endpoint(const char* ip, uint16_t port) {
  SocketAddress a;
  a.ip = *ParseIp6(ip, /*allow_ipv4=*/true);
  a.port = port;
  return a;
}

TEST(ChildEnv, Ipv6Variables) {
  ConnectionInfo info{true, Endpoint("2001:db8:1::10", 22), Endpoint("2001:db8:ffff::2", 40000)};
  EXPECT_THAT(ConnectionVariables(info),
              ElementsAre("PROTO=TCP", "TCPLOCALIP=2001:db8:1::10", "TCPLOCALPORT=22",
                          "TCPREMOTEIP=2001:db8:ffff::2", "TCPREMOTEPORT=40000",
                          "REMOTE_ADDR=2001:db8:ffff::2", "REMOTE_PORT=40000"));
}

TEST(ChildEnv, Ipv4AndMappedPrintAsDottedQuad) {
  ConnectionInfo info{true, Endpoint("::ffff:198.51.100.7", 80), Endpoint("192.0.2.2", 1)};
  EXPECT_THAT(ConnectionVariables(info),
              ElementsAre("PROTO=TCP", "TCPLOCALIP=198.51.100.7", "TCPLOCALPORT=80",
                          "TCPREMOTEIP=192.0.2.2", "TCPREMOTEPORT=1", "REMOTE_ADDR=192.0.2.2",
                          "REMOTE_PORT=1"));
}

TEST(ChildEnv, SourceKeys) {
  ConnectionInfo v6{true, Endpoint("2001:db8:1::10", 22), Endpoint("2001:db8:5:6:7::8", 1)};
  EXPECT_EQ(SourceKey(v6, 128), "2001:db8:5:6:7::8");
  EXPECT_EQ(SourceKey(v6, 64), "2001:db8:5:6::/64");
  EXPECT_EQ(SourceKey(v6, 48), "2001:db8:5::/48");
  ConnectionInfo v4{true, Endpoint("198.51.100.1", 22), Endpoint("192.0.2.77", 1)};
  EXPECT_EQ(SourceKey(v4, 64), "192.0.2.77");  // IPv4: always the full address
  EXPECT_EQ(SourceKey(ConnectionInfo{}, 64), "");
}

TEST(ChildEnv, UnixPeerGetsOnlyProto) {
  EXPECT_THAT(ConnectionVariables(ConnectionInfo{}), ElementsAre("PROTO=UNIX"));
}

TEST(ChildEnv, InheritedConnectionVariablesAreRemoved) {
  const char* environ[] = {"PATH=/bin", "TCPREMOTEIP=stale", "REMOTE_PORT=1", "PROTOCOL=kept",
                           "PROTO=old", "TCPLOCALIPX=kept",  "HOME=/root",    nullptr};
  EXPECT_THAT(BaseEnvironment(environ),
              ElementsAre("PATH=/bin", "PROTOCOL=kept", "TCPLOCALIPX=kept", "HOME=/root"));
  EXPECT_TRUE(BaseEnvironment(nullptr).empty());
}

// SKBOX_ACKNOWLEDGE is socketbox-inetd's own: no child inherits it, also
// with -E (which keeps the connection names as they are).
TEST(ChildEnv, AcknowledgeSettingIsNotInherited) {
  const char* environ[] = {"SKBOX_ACKNOWLEDGE=1", "PATH=/bin", "REMOTE_PORT=1",
                           "SKBOX_ACKNOWLEDGEX=kept", nullptr};
  EXPECT_THAT(BaseEnvironment(environ), ElementsAre("PATH=/bin", "SKBOX_ACKNOWLEDGEX=kept"));
  EXPECT_THAT(BaseEnvironment(environ, /*drop_connection_names=*/false),
              ElementsAre("PATH=/bin", "REMOTE_PORT=1", "SKBOX_ACKNOWLEDGEX=kept"));
}

TEST(ChildEnv, TakeListenerSettingIsNotInherited) {
  const char* environ[] = {"SKBOX_TAKE_LISTENER=1", "PATH=/bin", "SKBOX_LISTENER_SOCKET=/x",
                           nullptr};
  EXPECT_THAT(BaseEnvironment(environ), ElementsAre("PATH=/bin", "SKBOX_LISTENER_SOCKET=/x"));
}

TEST(ChildEnv, EnvironmentArrayIsNullTerminated) {
  ChildEnvironment env({"A=1"}, {"PROTO=UNIX"});
  char* const* p = env.envp();
  EXPECT_STREQ(p[0], "A=1");
  EXPECT_STREQ(p[1], "PROTO=UNIX");
  EXPECT_EQ(p[2], nullptr);
}

TEST(ChildEnv, QueryRealTcpConnection) {
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(server);

  auto info = QueryConnection(server.get());
  ASSERT_TRUE(info.ok());
  ASSERT_TRUE(info->is_ip);
  EXPECT_EQ(FormatIpForEnv(info->local.ip), "127.0.0.1");
  EXPECT_EQ(info->local.port, ntohs(addr.sin_port));
  sockaddr_in client_addr{};
  len = sizeof(client_addr);
  ASSERT_EQ(::getsockname(client.get(), reinterpret_cast<sockaddr*>(&client_addr), &len), 0);
  EXPECT_EQ(info->remote.port, ntohs(client_addr.sin_port));
}

TEST(ChildEnv, QueryUnixPairAndUnconnectedSocket) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  auto info = QueryConnection(a.get());
  ASSERT_TRUE(info.ok());
  EXPECT_FALSE(info->is_ip);

  UniqueFd lone(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  auto gone = QueryConnection(lone.get());
  EXPECT_FALSE(gone.ok());
  EXPECT_EQ(gone.error(), ENOTCONN);
}

}  // namespace
}  // namespace sbx::inetd
