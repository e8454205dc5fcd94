#include "inetd/log.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace sbx::inetd {
namespace {
const char* log_name = "socketbox-inetd";
}  // namespace

void SetLogName(const char* argv0) {
  if (argv0 == nullptr || *argv0 == '\0') return;
  const char* slash = std::strrchr(argv0, '/');
  log_name = slash ? slash + 1 : argv0;
}

const char* LogName() { return log_name; }

void Log(const char* format, ...) {
  // Built in one buffer and written with one call, so that lines from
  // concurrent processes sharing stderr do not interleave.
  char line[1024];
  int n = std::snprintf(line, sizeof(line), "%s: ", log_name);
  if (n < 0) return;
  va_list args;
  va_start(args, format);
  const int m = std::vsnprintf(line + n, sizeof(line) - static_cast<size_t>(n) - 1, format, args);
  va_end(args);
  size_t len = m < 0 ? static_cast<size_t>(n)
                     : std::min(sizeof(line) - 2, static_cast<size_t>(n) + static_cast<size_t>(m));
  line[len++] = '\n';
  std::fwrite(line, 1, len, stderr);
  std::fflush(stderr);
}

}  // namespace sbx::inetd
