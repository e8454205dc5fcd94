// send-receive-fd: pass one fd over an inherited Unix socket, or receive one
// and run a program with it.
//
//   send-receive-fd -s FD SOCKFD       send FD ("A" protocol) over SOCKFD
//   send-receive-fd -r SOCKFD PROG...  receive one fd from SOCKFD, put its
//                                      number in SKBOX_RECEIVED_FD, exec PROG
//
// Any fd is passed on, as by the original (see ReceiveAndExec).
// Same command line as the original (options before or after SOCKFD, see
// Parse); numbers are checked instead of atoi'd.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/fd_passing.h"
#include "engine/core/numbers.h"
#include "engine/core/printable.h"
#include "engine/sys/stderr_log.h"
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

// What the fd is, for a message: "pipe:[123]", "socket:[456]", a path.
std::string Describe(int fd) {
  char link[256];
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(proc.c_str(), link, sizeof(link) - 1);
  if (n <= 0) return "?";
  return PrintableText(std::string_view(link, static_cast<size_t>(n))).text;
}

// The original passed on whatever fd came: a connection, but also a file,
// a pipe, a UDP or a listening socket. So does this by default. A check is
// opt-in (SKBOX_STRICT_STREAM_MODE=1 or 2); an fd it refuses is reported and
// the program not run, rather than closed while the next fd is awaited
// (none may ever come).
int ReceiveAndExec(int channel, char** program) {
  const char* strict_env = std::getenv("SKBOX_STRICT_STREAM_MODE");
  StrictLevel strict = StrictLevel::kAny;
  if (strict_env != nullptr && *strict_env != '\0') {
    auto level = ParseStrictLevel(strict_env);
    if (!level.ok()) return Usage(std::string(level.status().message()).c_str());
    strict = *level;
  }
  ReceiveOptions options;
  options.strict = StrictLevel::kAny;
  auto received = ReceiveFd(channel, options);
  if (!received.ok()) {
    Log("receiving an fd from fd %d: %s", channel, std::strerror(received.error()));
    return 1;
  }
  if (!FdPassesStrictLevel(received->get(), strict)) {
    Log("the fd received over fd %d (%s) is not a connected stream socket%s, which "
        "SKBOX_STRICT_STREAM_MODE=%d asks for: closed, %s not run",
        channel, Describe(received->get()).c_str(),
        strict == StrictLevel::kStreamInetUnix ? " of AF_UNIX, AF_INET or AF_INET6" : "",
        static_cast<int>(strict), PrintableText(program[0]).text);
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

struct CommandLine {
  bool receive = false;
  std::optional<int> send_fd;
  std::vector<char*> words;  // SOCKFD, then (with -r) PROG and its arguments
};

// The original's getopt("rs:") permutes: options may come before or after
// SOCKFD ("8 -s 9"), a value may be attached ("-s9"), letters may be joined
// ("-rs9"), and "--" ends the options. Unlike a plain permuting getopt, the
// words from PROG on are PROG's, so "-r 8 sh -c CMD" runs sh -c CMD (the
// original took -c for its own and failed).
std::optional<CommandLine> Parse(int argc, char** argv) {
  CommandLine line;
  int i = 1;
  for (; i < argc && line.words.size() < 2; ++i) {
    char* arg = argv[i];
    if (std::strcmp(arg, "--") == 0) {
      ++i;
      break;
    }
    if (arg[0] != '-' || arg[1] == '\0') {
      line.words.push_back(arg);
      continue;
    }
    for (const char* letter = arg + 1; *letter != '\0'; ++letter) {
      if (*letter == 'r') {
        line.receive = true;
        continue;
      }
      if (*letter != 's') {
        Log("unknown option -%c", *letter);
        return std::nullopt;
      }
      const char* value = letter[1] != '\0' ? letter + 1 : (i + 1 < argc ? argv[++i] : nullptr);
      if (value == nullptr) {
        Log("option -s needs an fd number");
        return std::nullopt;
      }
      line.send_fd = ParseFd(value);
      if (!line.send_fd) {
        Log("option -s '%s': not an fd number", value);
        return std::nullopt;
      }
      break;
    }
  }
  for (; i < argc; ++i) line.words.push_back(argv[i]);
  return line;
}

int Main(int argc, char** argv) {
  SetLogName(argv[0]);
  auto line = Parse(argc, argv);
  if (!line) return Usage("bad command line");
  if (line->words.empty() || (!line->receive && !line->send_fd)) {
    return Usage("an fd number and one of -r or -s are required");
  }
  auto channel = ParseFd(line->words[0]);
  if (!channel) return Usage("SOCKFD is not an fd number");
  if (line->receive) {
    if (line->words.size() < 2) return Usage("-r needs a program to run");
    line->words.push_back(nullptr);
    return ReceiveAndExec(*channel, line->words.data() + 1);
  }
  if (line->words.size() > 1) {
    Log("warning: ignoring extra argument(s) after SOCKFD, from '%s'",
        PrintableText(line->words[1]).text);
  }
  return Send(*line->send_fd, *channel);
}

}  // namespace
}  // namespace sbx::inetd

int main(int argc, char** argv) { return sbx::inetd::Main(argc, argv); }
