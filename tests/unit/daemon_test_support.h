// Shared by the daemon's unit tests: a temporary directory of real
// receiving sockets (AF_UNIX datagram, bound to paths), a clock the test
// moves, and connections that are real fds.
#ifndef SBX_TESTS_UNIT_DAEMON_TEST_SUPPORT_H_
#define SBX_TESTS_UNIT_DAEMON_TEST_SUPPORT_H_

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "engine/sys/unique_fd.h"

namespace sbx::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sbx-unit-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A receiving socket bound at `path` (what a backend opens).
inline UniqueFd BindReceiver(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) std::abort();
  return fd;
}

// Something with an fd number to stand for an accepted connection.
inline int NewConnectionFd() { return ::eventfd(0, EFD_CLOEXEC); }

inline bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

struct FakeClock {
  uint64_t now = 1'000'000'000;
  uint64_t operator()() const { return now; }
};

}  // namespace sbx::testing

#endif  // SBX_TESTS_UNIT_DAEMON_TEST_SUPPORT_H_
