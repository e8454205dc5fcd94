// The check of the fds a configuration (jump-fd:N) or -i names: each kind of
// fd the kernel can hand a process, made for real, and the message it gets.
#include "engine/daemon/fd_checks.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/core/config_loader.h"
#include "engine/sys/fd_channel_check.h"
#include "engine/sys/open_fds.h"
#include "engine/sys/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sbx {
namespace {

using ::testing::HasSubstr;

// Opens what a case is about and returns the fd to check; `keep` holds
// every fd the case opened until the check is done.
using FdMaker = std::function<int(std::vector<UniqueFd>* keep)>;

int Pair(int type, std::vector<UniqueFd>* keep) {
  int sv[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  keep->emplace_back(sv[0]);
  keep->emplace_back(sv[1]);
  return sv[1];
}

int Socket(int family, int type, std::vector<UniqueFd>* keep) {
  keep->emplace_back(::socket(family, type | SOCK_CLOEXEC, 0));
  return keep->back().get();
}

// An abstract-namespace name unique to this process and `tag`.
sockaddr_un AbstractName(const char* tag, socklen_t* len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const int n =
      std::snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "sbx-fd-check-%d-%s", ::getpid(), tag);
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
  return a;
}

struct Case {
  const char* name;
  FdMaker make;
  const char* problem;  // substring of the message; nullptr = fit
};

std::vector<Case> Cases() {
  return {
      {"datagram pair", [](auto* keep) { return Pair(SOCK_DGRAM, keep); }, nullptr},
      {"stream pair", [](auto* keep) { return Pair(SOCK_STREAM, keep); }, nullptr},
      {"seqpacket pair", [](auto* keep) { return Pair(SOCK_SEQPACKET, keep); }, nullptr},
      {"datagram connected to a bound name",
       [](auto* keep) {
         socklen_t len;
         const sockaddr_un a = AbstractName("dgram", &len);
         const int server = Socket(AF_UNIX, SOCK_DGRAM, keep);
         const int client = Socket(AF_UNIX, SOCK_DGRAM, keep);
         if (::bind(server, reinterpret_cast<const sockaddr*>(&a), len) != 0 ||
             ::connect(client, reinterpret_cast<const sockaddr*>(&a), len) != 0) {
           return -1;
         }
         return client;
       },
       nullptr},
      {"not open",
       [](auto*) {
         const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
         ::close(fd);  // a number that was just free
         return fd;
       },
       "is not open"},
      {"negative", [](auto*) { return -1; }, "fd -1 is not a file descriptor"},
      {"pipe",
       [](auto* keep) {
         int p[2];
         if (::pipe2(p, O_CLOEXEC) != 0) return -1;
         keep->emplace_back(p[0]);
         keep->emplace_back(p[1]);
         return p[1];
       },
       "is a pipe, not a socket"},
      {"regular file",
       [](auto* keep) {
         keep->emplace_back(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
         return keep->back().get();
       },
       "is a regular file, not a socket"},
      {"character device",
       [](auto* keep) {
         keep->emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
         return keep->back().get();
       },
       "is a character device, not a socket"},
      {"eventfd",
       [](auto* keep) {
         keep->emplace_back(::eventfd(0, EFD_CLOEXEC));
         return keep->back().get();
       },
       "is a special fd (an eventfd, epoll, io_uring, ...), not a socket"},
      {"TCP socket", [](auto* keep) { return Socket(AF_INET6, SOCK_STREAM, keep); },
       "is an AF_INET6 socket, not a Unix socket"},
      {"UDP socket", [](auto* keep) { return Socket(AF_INET, SOCK_DGRAM, keep); },
       "is an AF_INET socket, not a Unix socket"},
      {"unconnected datagram", [](auto* keep) { return Socket(AF_UNIX, SOCK_DGRAM, keep); },
       "is a Unix datagram socket that is not connected"},
      {"unconnected stream", [](auto* keep) { return Socket(AF_UNIX, SOCK_STREAM, keep); },
       "is a Unix stream socket that is not connected"},
      {"listening stream",
       [](auto* keep) {
         socklen_t len;
         const sockaddr_un a = AbstractName("listen", &len);
         const int fd = Socket(AF_UNIX, SOCK_STREAM, keep);
         if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), len) != 0 || ::listen(fd, 1) != 0)
           return -1;
         return fd;
       },
       "is a listening Unix stream socket, not a connected one"},
  };
}

TEST(FdChannelCheckTest, EachKindOfFd) {
  for (const Case& c : Cases()) {
    std::vector<UniqueFd> keep;
    const int fd = c.make(&keep);
    ASSERT_TRUE(fd >= 0 || c.problem != nullptr) << c.name << ": could not set up";
    const std::string problem = FdChannelProblem(fd);
    if (c.problem == nullptr) {
      EXPECT_EQ(problem, "") << c.name;
    } else {
      EXPECT_THAT(problem, HasSubstr(c.problem)) << c.name;
    }
  }
}

TEST(FdChecksTest, ForcedFdNamesTheOption) {
  for (const Case& c : Cases()) {
    std::vector<UniqueFd> keep;
    const int fd = c.make(&keep);
    const absl::Status s = CheckForcedFd(fd, nullptr);
    EXPECT_EQ(s.ok(), c.problem == nullptr) << c.name << ": " << s;
    if (c.problem != nullptr) {
      EXPECT_THAT(std::string(s.message()), HasSubstr("-i " + std::to_string(fd) + ": ")) << c.name;
      EXPECT_THAT(std::string(s.message()), HasSubstr(c.problem)) << c.name;
    }
  }
}

// The configuration's errors name the file, the line and the fd, every one.
TEST(FdChecksTest, ConfigurationErrorsNameFileLineAndFd) {
  std::vector<UniqueFd> keep;
  const int good = Pair(SOCK_DGRAM, &keep);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  keep.emplace_back(p[0]);
  keep.emplace_back(p[1]);
  const int closed = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ::close(closed);
  const std::string text =
      "max-rules:1\nrule-set:0 size:3\nport:81 jump-fd:" + std::to_string(good) +
      "\nport:82 jump-fd:" + std::to_string(p[0]) + "\nport:83 jump-fd:" + std::to_string(closed) +
      "\ndefault fail\n";
  auto loaded = LoadConfigText(text, "/etc/sb.conf");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const absl::Status s = CheckNamedFds(*loaded->table, "/etc/sb.conf", nullptr);
  ASSERT_FALSE(s.ok());
  const std::string message(s.message());
  EXPECT_THAT(message, HasSubstr(absl::StrCat("/etc/sb.conf:4: error: near 'jump-fd:", p[0],
                                              "': fd ", p[0], " is a pipe, not a socket")));
  EXPECT_THAT(message, HasSubstr(absl::StrCat("/etc/sb.conf:5: error: near 'jump-fd:", closed,
                                              "': fd ", closed, " is not open")));
  EXPECT_THAT(message, ::testing::Not(HasSubstr(":3:")));          // the good one
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 1);  // two lines

  // Only the good fd: accepted.
  auto only_good = LoadConfigText(
      "max-rules:1\nrule-set:0 size:1\ndefault jump-fd:" + std::to_string(good) + "\n", "g.conf");
  ASSERT_TRUE(only_good.ok());
  EXPECT_TRUE(CheckNamedFds(*only_good->table, "g.conf", nullptr).ok());
}

// On a reload, a fit socket the daemon opened itself (a backend's connected
// datagram socket, say) is not one the operator passed: refused.
TEST(FdChecksTest, ReloadRefusesAnFdThatWasNotInherited) {
  const std::vector<int> inherited = OpenFds();
  std::vector<UniqueFd> keep;
  const int later = Pair(SOCK_DGRAM, &keep);  // opened after the list was taken
  ASSERT_FALSE(std::binary_search(inherited.begin(), inherited.end(), later));
  auto loaded = LoadConfigText(
      "max-rules:1\nrule-set:0 size:1\ndefault jump-fd:" + std::to_string(later) + "\n", "r.conf");
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(CheckNamedFds(*loaded->table, "r.conf", nullptr).ok());
  const absl::Status s = CheckNamedFds(*loaded->table, "r.conf", &inherited);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat("r.conf:3: error: near 'jump-fd:", later, "': fd ", later,
                                     " was not open when socketbox started")));
  EXPECT_THAT(std::string(CheckForcedFd(later, &inherited).message()),
              HasSubstr(absl::StrCat("-i ", later, ": fd ", later,
                                     " was not open when socketbox started")));
  // Listed as inherited: accepted.
  std::vector<int> with_later = inherited;
  with_later.push_back(later);
  std::sort(with_later.begin(), with_later.end());
  EXPECT_TRUE(CheckNamedFds(*loaded->table, "r.conf", &with_later).ok());
  EXPECT_TRUE(CheckForcedFd(later, &with_later).ok());
}

TEST(OpenFdsTest, ListsWhatIsOpenAndNothingElse) {
  std::vector<UniqueFd> keep;
  const int fd = Pair(SOCK_STREAM, &keep);
  const std::vector<int> open = OpenFds();
  EXPECT_TRUE(std::is_sorted(open.begin(), open.end()));
  EXPECT_TRUE(std::binary_search(open.begin(), open.end(), fd));
  keep.clear();
  const std::vector<int> after = OpenFds();
  EXPECT_FALSE(std::binary_search(after.begin(), after.end(), fd));
  for (int f : after) EXPECT_GE(::fcntl(f, F_GETFD), 0) << f;
}

}  // namespace
}  // namespace sbx
