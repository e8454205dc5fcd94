#include "relay/diagnostics.h"

#include <sys/socket.h>

#include <cstring>
#include <ctime>

#include "relay/log.h"

namespace sbx::relay {
namespace {
LogOnce<kLogKinds> log_once;
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

void LogConnection(const std::optional<SocketAddress>& peer,
                   const std::optional<SocketAddress>& local) {
  char when[32];
  const time_t now = ::time(nullptr);
  tm t{};
  ::gmtime_r(&now, &t);
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &t);
  Log("%s %s -> %s", when, peer ? FormatHostPort(*peer).c_str() : "[unix]",
      local ? FormatHostPort(*local).c_str() : "[unix]");
}

}  // namespace sbx::relay
