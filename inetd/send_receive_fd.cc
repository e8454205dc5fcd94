// send-receive-fd: pass one fd over an inherited Unix socket, or receive one
// and run a program with it.
//
//   send-receive-fd -s FD SOCKFD       send FD ("A" protocol) over SOCKFD
//   send-receive-fd -r SOCKFD PROG...  receive one fd from SOCKFD, put its
//                                      number in SKBOX_RECEIVED_FD, exec PROG
//
// Same command line as the original; numbers are checked instead of atoi'd,
// and options end at the first non-option, so PROG's options stay PROG's.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "engine/core/fd_passing.h"
#include "engine/core/numbers.h"
#include "inetd/log.h"
#include "inetd/options.h"

namespace sbx::inetd {
namespace {

int Usage(const char* problem) {
  Log("%s", problem);
  Log("usage: send-receive-fd -s FD SOCKFD | send-receive-fd -r SOCKFD PROG [ARGS...]");
  return 1;
}

std::optional<int> ParseFd(const char* text) {
  auto v = ParseDecimal(text, 0, 0x7fffffff);
  if (!v) return std::nullopt;
  return static_cast<int>(*v);
}

int Send(int fd, int channel) {
  SysStatus sent = SendFd(channel, fd);
  if (!sent.ok()) {
    Log("sending fd %d over fd %d: %s", fd, channel, std::strerror(sent.error()));
    return 1;
  }
  return 0;
}

int ReceiveAndExec(int channel, char** program) {
  auto strict = ParseStrictLevel(std::getenv("SKBOX_STRICT_STREAM_MODE"));
  if (!strict.ok()) return Usage(std::string(strict.status().message()).c_str());
  ReceiveOptions options;
  options.strict = *strict;
  auto received = ReceiveFd(channel, options);
  if (!received.ok()) {
    Log("receiving an fd from fd %d: %s", channel, std::strerror(received.error()));
    return 1;
  }
  const int fd = received->Release();
  // ReceiveFd sets FD_CLOEXEC; the program is meant to inherit this one.
  if (::fcntl(fd, F_SETFD, 0) != 0 ||
      ::setenv("SKBOX_RECEIVED_FD", std::to_string(fd).c_str(), 1) != 0) {
    Log("preparing fd %d: %s", fd, std::strerror(errno));
    return 1;
  }
  ::execvp(program[0], program);
  Log("exec %s: %s", program[0], std::strerror(errno));
  return 127;
}

int Main(int argc, char** argv) {
  SetLogName(argv[0]);
  bool receive = false;
  std::optional<int> send_fd;
  int i = 1;
  for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      ++i;
      break;
    }
    if (std::strcmp(argv[i], "-r") == 0) {
      receive = true;
    } else if (std::strcmp(argv[i], "-s") == 0) {
      if (i + 1 >= argc) return Usage("option -s needs an fd number");
      send_fd = ParseFd(argv[++i]);
      if (!send_fd) return Usage("option -s: not an fd number");
    } else {
      return Usage("unknown option");
    }
  }
  if (i >= argc || (!receive && !send_fd)) {
    return Usage("an fd number and one of -r or -s are required");
  }
  auto channel = ParseFd(argv[i]);
  if (!channel) return Usage("SOCKFD is not an fd number");
  if (receive) {
    if (i + 1 >= argc) return Usage("-r needs a program to run");
    return ReceiveAndExec(*channel, argv + i + 1);
  }
  return Send(*send_fd, *channel);
}

}  // namespace
}  // namespace sbx::inetd

int main(int argc, char** argv) { return sbx::inetd::Main(argc, argv); }
