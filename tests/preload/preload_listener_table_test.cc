// The table of replaced listeners, on real sockets: lookups, stale entries
// after close and fd reuse, options recorded, many threads at once.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "engine/sys/unique_fd.h"
#include "preload/listener_table.h"

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

}  // namespace
}  // namespace sbx::preload
