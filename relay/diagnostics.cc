#include "relay/diagnostics.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

#include "relay/log.h"

namespace sbx::relay {
namespace {
LogOnce<kLogKinds> log_once;

// "[addr]:port" as inet_ntop(AF_INET6) prints it: always IPv6 text, no scope.
std::string OriginalEndpoint(const std::optional<SocketAddress>& address) {
  char text[INET6_ADDRSTRLEN] = "::";
  if (address) {
    const in6_addr ip = address->ip.ToIn6();
    ::inet_ntop(AF_INET6, &ip, text, sizeof(text));
  }
  return "[" + std::string(text) + "]:" + std::to_string(address ? address->port : 0);
}
}  // namespace

void LogCause(LogKind kind, const char* what, int err, const std::string& where) {
  if (!log_once.First(kind)) return;
  Log("%s%s%s (%s; further ones are only counted)", what, err ? ": " : "",
      err ? std::strerror(err) : "", where.c_str());
}

void SetResetOnClose(int fd) {
  const linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

void LogConnection(LogFormat format, const std::optional<SocketAddress>& peer,
                   const std::optional<SocketAddress>& local) {
  const time_t now = ::time(nullptr);
  if (format == LogFormat::kOriginal) {
    char line[160];
    const std::string from = OriginalEndpoint(peer), to = OriginalEndpoint(local);
    const int n = std::snprintf(line, sizeof(line), "%lld %s -> %s\n", static_cast<long long>(now),
                                from.c_str(), to.c_str());
    if (n > 0) (void)!::write(STDERR_FILENO, line, std::min(sizeof(line) - 1, size_t(n)));
    return;
  }
  char when[32];
  tm t{};
  ::gmtime_r(&now, &t);
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &t);
  Log("%s %s -> %s", when, peer ? FormatHostPort(*peer).c_str() : "[unix]",
      local ? FormatHostPort(*local).c_str() : "[unix]");
}

}  // namespace sbx::relay
