// socket-query: print the local and/or remote address and port of a socket.
//
//   socket-query [-l[a|p]] [-r[a|p]] [-R] [-f FD]
//
// -l local, -r remote (default: both, "LOCAL REMOTE"); a following -a keeps
// only the address, -p only the port; -R prints raw hex; -f the socket's fd
// (default 0, as for an inetd child). The output format is the original's:
// addresses as eight zero-padded hex groups, "[ADDR]:PORT" for an endpoint.
// Unlike the original, IPv4 sockets work too: they print as IPv4-mapped
// addresses (::ffff:a.b.c.d in the same eight-group form), so that scripts
// parsing the original's output keep working.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "engine/core/address.h"
#include "engine/core/diagnostic.h"
#include "engine/core/numbers.h"
#include "engine/core/option_table.h"
#include "engine/core/printable.h"
#include "engine/core/str_cat.h"
#include "engine/sys/stderr_log.h"
#include "inetd/standard_output.h"

namespace sbx::inetd {
namespace {

enum class Side { kBoth, kLocal, kRemote };
enum class Part { kAll, kAddress, kPort };

struct Request {
  Side side = Side::kBoth;
  Part part = Part::kAll;
  bool raw = false;
  int fd = 0;
};

// Where the help of an option starts after the usage line.
constexpr size_t kHelpColumn = 16;

constexpr char kUsage[] = "usage: socket-query [-l[a|p]] [-r[a|p]] [-R] [-f SOCKET_FD]";

// A refusal whose only message is the usage line (an empty status message).
absl::Status UsageOnly() { return absl::InvalidArgumentError(""); }

// -a and -p only right after -l or -r, once (as the original).
absl::Status ApplyPart(Part part, Request* r) {
  if (r->side == Side::kBoth || r->part != Part::kAll) return UsageOnly();
  r->part = part;
  return absl::OkStatus();
}

absl::Status ApplySide(Side side, Request* r) {
  r->side = side;
  r->part = Part::kAll;
  return absl::OkStatus();
}

// Only short options: the original's getopt("aplrRf:"), options first.
constexpr OptionRow<Request> kRows[] = {
    {nullptr, 'l', nullptr, "the local endpoint",
     [](const char*, Request* r) { return ApplySide(Side::kLocal, r); }},
    {nullptr, 'r', nullptr, "the remote endpoint",
     [](const char*, Request* r) { return ApplySide(Side::kRemote, r); }},
    {nullptr, 'a', nullptr, "after -l or -r: the address only",
     [](const char*, Request* r) { return ApplyPart(Part::kAddress, r); }},
    {nullptr, 'p', nullptr, "after -l or -r: the port only",
     [](const char*, Request* r) { return ApplyPart(Part::kPort, r); }},
    {nullptr, 'R', nullptr, "raw hex",
     [](const char*, Request* r) -> absl::Status {
       r->raw = true;
       return absl::OkStatus();
     }},
    {nullptr, 'f', "SOCKET_FD", "the socket's fd (default 0)",
     [](const char* v, Request* r) -> absl::Status {
       auto fd = ParseDecimal(v, 0, 0x7fffffff);
       if (!fd) {
         return absl::InvalidArgumentError(
             StrCat("option -f '", Printable(v), "': not an fd number"));
       }
       r->fd = static_cast<int>(*fd);
       return absl::OkStatus();
     }},
};

// Worded as glibc's getopt worded them for the original ("--x" was an
// invalid option '-' to it: it knew no long options).
absl::Status WordFault(const OptionFault& f) {
  const char option = f.short_name != 0 ? f.short_name : '-';
  return absl::InvalidArgumentError(
      StrCat(f.missing_value ? "option requires an argument -- '" : "invalid option -- '",
             Printable(std::string(1, option)), "'"));
}

std::optional<SocketAddress> Query(int fd, bool local) {
  sockaddr_storage storage{};
  socklen_t len = sizeof(storage);
  auto* sa = reinterpret_cast<sockaddr*>(&storage);
  const int rc = local ? ::getsockname(fd, sa, &len) : ::getpeername(fd, sa, &len);
  const char* call = local ? "getsockname" : "getpeername";
  if (rc != 0) {
    Log("%s on fd %d: %s", call, fd, std::strerror(errno));
    return std::nullopt;
  }
  auto address = SocketAddress::FromSockaddr(sa, len);
  if (!address) Log("%s on fd %d: not an IPv4 or IPv6 socket", call, fd);
  return address;
}

std::string Address(const SocketAddress& a, bool raw) {
  char text[48];
  if (raw) {
    std::snprintf(text, sizeof(text), "%04X%04X%04X%04X%04X%04X%04X%04X", a.ip.group(0),
                  a.ip.group(1), a.ip.group(2), a.ip.group(3), a.ip.group(4), a.ip.group(5),
                  a.ip.group(6), a.ip.group(7));
  } else {
    std::snprintf(text, sizeof(text), "%04x:%04x:%04x:%04x:%04x:%04x:%04x:%04x", a.ip.group(0),
                  a.ip.group(1), a.ip.group(2), a.ip.group(3), a.ip.group(4), a.ip.group(5),
                  a.ip.group(6), a.ip.group(7));
  }
  return text;
}

std::string Port(const SocketAddress& a, bool raw) {
  char text[8];
  std::snprintf(text, sizeof(text), raw ? "%04X" : "%u", static_cast<unsigned>(a.port));
  return text;
}

// Built by appending: GCC 12 at -O3 raises a false -Wrestrict on a chain of
// operator+ on std::string ("[" + ... + "]:" + ...).
std::string Endpoint(const SocketAddress& a, bool raw) {
  std::string text;
  if (!raw) text += '[';
  text += Address(a, raw);
  text += raw ? ":" : "]:";
  text += Port(a, raw);
  return text;
}

int Main(int argc, char** argv) {
  SetLogName(argv[0]);
  Request request;
  auto words = ParseOptionTable<Request>(kRows, argc, argv, OptionOrder::kStopAtFirstWord, &request,
                                         WordFault);
  if (!words.ok()) {
    if (!words.status().message().empty()) Log("%s", std::string(words.status().message()).c_str());
    LogEachLine(StrCat(kUsage, "\n", OptionHelp<Request>(kRows, kHelpColumn)));
    return 1;
  }
  if (!words->empty()) {
    // The original ignored words after the options; keep such lines working.
    Log("warning: ignoring extra argument(s) after the options, from '%s'",
        PrintableText(words->front()).text);
  }
  const auto [side, part, raw, fd] = request;
  std::string line;
  if (side == Side::kBoth) {
    auto remote = Query(fd, false);
    if (!remote) return 1;
    auto local = Query(fd, true);
    if (!local) return 1;
    line = Endpoint(*local, raw) + " " + Endpoint(*remote, raw);
  } else {
    auto a = Query(fd, side == Side::kLocal);
    if (!a) return 1;
    line = part == Part::kAddress ? Address(*a, raw)
           : part == Part::kPort  ? Port(*a, raw)
                                  : Endpoint(*a, raw);
  }
  std::printf("%s\n", line.c_str());
  return FinishStandardOutput() ? 0 : 1;
}

}  // namespace
}  // namespace sbx::inetd

int main(int argc, char** argv) { return sbx::inetd::Main(argc, argv); }
