// The table of replaced listeners, on real sockets: lookups, stale entries
// after close and fd reuse, options recorded, many threads at once; kernel
// dispatch entries (the fd swapped for a TCP listener, the receiving socket
// and channel kept and closed when the listener is found closed, the bound
// address published for adopters and found again).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "engine/sys/unique_fd.h"
#include "preload/listener_table.h"
#include "preload/published_address.h"

namespace sbx::preload {
namespace {

sockaddr_in6 Fe8f(uint16_t port) {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(port);
  a.sin6_addr.s6_addr[0] = 0xfe;
  a.sin6_addr.s6_addr[1] = 0x8f;
  a.sin6_addr.s6_addr[15] = 1;
  return a;
}

UniqueFd UnixDgram() { return UniqueFd(socket(AF_UNIX, SOCK_DGRAM, 0)); }

TEST(ListenerTableTest, RemembersTheBoundAddress) {
  UniqueFd s = UnixDgram();
  const sockaddr_in6 a = Fe8f(80);
  ASSERT_TRUE(RememberListener(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof(a), {}));
  ListenerInfo info;
  ASSERT_TRUE(FindListener(s.get(), &info));
  EXPECT_EQ(info.bound_len, sizeof(a));
  EXPECT_EQ(std::memcmp(&info.bound, &a, sizeof(a)), 0);
  UniqueFd other = UnixDgram();
  EXPECT_FALSE(FindListener(other.get(), &info));
}

TEST(ListenerTableTest, ClosedAndReusedFdIsNotFound) {
  UniqueFd s = UnixDgram();
  const int fd = s.get();
  const sockaddr_in6 a = Fe8f(81);
  ASSERT_TRUE(RememberListener(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a), {}));
  s.Reset();
  UniqueFd again = UnixDgram();  // the lowest free fd: the same number
  ASSERT_EQ(again.get(), fd);
  ListenerInfo info;
  EXPECT_FALSE(FindListener(fd, &info));
  const int one = 1;
  EXPECT_FALSE(RecordListenerOption(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
}

TEST(ListenerTableTest, RecordsOptionsForAcceptedSockets) {
  UniqueFd s = UnixDgram();
  const sockaddr_in6 a = Fe8f(82);
  ASSERT_TRUE(RememberListener(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof(a), {}));
  const int one = 1;
  EXPECT_TRUE(RecordListenerOption(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
  EXPECT_FALSE(RecordListenerOption(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
  ListenerInfo info;
  ASSERT_TRUE(FindListener(s.get(), &info));
  int v = 0;
  EXPECT_TRUE(info.options.Has(IPPROTO_TCP, TCP_NODELAY, &v));
  EXPECT_EQ(v, 1);
}

TEST(ListenerTableTest, StaleEntriesAreReusedSoTheTableDoesNotFillUp) {
  const sockaddr_in6 a = Fe8f(83);
  for (int i = 0; i < 1000; ++i) {
    UniqueFd s = UnixDgram();
    ASSERT_TRUE(RememberListener(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof(a), {}))
        << i;
  }
}

TEST(ListenerTableTest, ManyThreads) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&failures, t] {
      for (int i = 0; i < 200; ++i) {
        UniqueFd s = UnixDgram();
        const sockaddr_in6 a = Fe8f(static_cast<uint16_t>(1000 + t));
        ListenerInfo info;
        if (!RememberListener(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof(a), {}) ||
            !FindListener(s.get(), &info) || std::memcmp(&info.bound, &a, sizeof(a)) != 0) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

UniqueFd TcpListener() {
  UniqueFd l(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  if (!l || bind(l.get(), reinterpret_cast<const sockaddr*>(&any), sizeof any) != 0 ||
      listen(l.get(), 4) != 0) {
    return UniqueFd();
  }
  return l;
}

ino_t InodeOf(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) >= 0; }

TEST(ListenerTableTest, KernelListenerTakesTheFdAndKeepsTheRest) {
  UniqueFd s = UnixDgram();
  const int fd = s.get();
  const sockaddr_in6 a = Fe8f(84);
  ASSERT_TRUE(RememberListener(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a), {}));
  const int one = 1;
  ASSERT_TRUE(RecordListenerOption(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
  UniqueFd listener = TcpListener();
  ASSERT_TRUE(listener);
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd theirs(pair[1]);
  const int receiving = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const ino_t receiving_ino = InodeOf(receiving);
  ASSERT_TRUE(InstallKernelListener(fd, listener.get(), 0, receiving, pair[0]));
  EXPECT_TRUE(KernelListenersExist());
  EXPECT_EQ(InodeOf(fd), InodeOf(listener.get()));  // the fd is the listener now
  EXPECT_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);    // as asked (dup3 flags 0)
  ListenerInfo info;
  ASSERT_TRUE(PeekKernelListener(fd, &info));
  EXPECT_TRUE(info.kernel);
  EXPECT_TRUE(IsLive(info));
  EXPECT_TRUE(ReceivingIsLive(info));
  EXPECT_EQ(info.receiving.fd, receiving);
  EXPECT_EQ(InodeOf(info.receiving.fd), receiving_ino);
  EXPECT_EQ(info.bound_len, sizeof(a));  // kept: getsockname still answers it
  EXPECT_EQ(std::memcmp(&info.bound, &a, sizeof(a)), 0);
  int v = 0;
  EXPECT_TRUE(info.options.Has(IPPROTO_TCP, TCP_NODELAY, &v));
  // Published for the processes the listener is handed to.
  sockaddr_storage found{};
  socklen_t found_len = 0;
  ASSERT_TRUE(FindPublished(InodeOf(fd), &found, &found_len));
  EXPECT_EQ(found_len, sizeof(a));
  EXPECT_EQ(std::memcmp(&found, &a, sizeof(a)), 0);

  // The program closes the listener and the number is reused: the entry is
  // stale, and the receiving socket, the channel and the published name go.
  const int channel = pair[0];
  const int published = info.published.fd;
  EXPECT_TRUE(IsOpen(published));
  close(fd);
  UniqueFd reuse = UnixDgram();
  ASSERT_EQ(reuse.get(), fd);
  EXPECT_FALSE(IsLive(info));
  EXPECT_FALSE(PeekKernelListener(fd, &info));
  EXPECT_FALSE(IsOpen(receiving));
  EXPECT_FALSE(IsOpen(channel));
  EXPECT_FALSE(IsOpen(published));
  EXPECT_FALSE(FindPublished(InodeOf(listener.get()), &found, &found_len));
  // The engine sees the channel close.
  char byte;
  EXPECT_EQ(recv(theirs.get(), &byte, 1, MSG_DONTWAIT), 0);
  s.Release();  // closed above
}

TEST(ListenerTableTest, AdoptedListenerHasNoReceivingSocket) {
  UniqueFd listener = TcpListener();
  ASSERT_TRUE(listener);
  const sockaddr_in6 a = Fe8f(85);
  ASSERT_TRUE(AdoptKernelListener(listener.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a));
  EXPECT_FALSE(
      AdoptKernelListener(listener.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a));
  ListenerInfo info;
  ASSERT_TRUE(PeekKernelListener(listener.get(), &info));
  EXPECT_TRUE(IsLive(info));
  EXPECT_FALSE(ReceivingIsLive(info));
  EXPECT_EQ(std::memcmp(&info.bound, &a, sizeof(a)), 0);
}

TEST(PublishedAddressTest, NamesRoundTripThroughProcNetUnixText) {
  sockaddr_in6 a = Fe8f(80);
  char name[108];
  ASSERT_TRUE(
      PublishedName(4242, reinterpret_cast<const sockaddr*>(&a), sizeof a, name, sizeof name));
  const std::string text =
      std::string("Num       RefCount Protocol Flags    Type St Inode Path\n") +
      "0000000000000000: 00000002 00000000 00000000 0002 01 111 @socketbox-preload/42/00\n" +
      "0000000000000000: 00000002 00000000 00000000 0002 01 112 @" + name + "\n" +
      "0000000000000000: 00000002 00000000 00010000 0001 01 113 /run/x.sock\n";
  sockaddr_storage out{};
  socklen_t len = 0;
  ASSERT_TRUE(FindPublishedIn(text.data(), text.size(), 4242, &out, &len));
  EXPECT_EQ(len, sizeof a);
  EXPECT_EQ(std::memcmp(&out, &a, sizeof a), 0);
  // Another inode, a prefix of it, a malformed or truncated address: none.
  EXPECT_FALSE(FindPublishedIn(text.data(), text.size(), 424, &out, &len));
  EXPECT_FALSE(FindPublishedIn(text.data(), text.size(), 42, &out, &len));
  const std::string cut = text.substr(0, text.find(name) + std::strlen(name) - 2) + "\n";
  EXPECT_FALSE(FindPublishedIn(cut.data(), cut.size(), 4242, &out, &len));
  // A name too long for sun_path is not made.
  EXPECT_FALSE(PublishedName(4242, reinterpret_cast<const sockaddr*>(&a), sizeof a, name, 40));
}

}  // namespace
}  // namespace sbx::preload
