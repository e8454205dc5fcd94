#include "relay/log.h"

#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>

namespace sbx::relay {

void Log(const char* format, ...) {
  char line[1024];
  int n = std::snprintf(line, sizeof(line), "socketbox-relay: ");
  va_list args;
  va_start(args, format);
  const int m = std::vsnprintf(line + n, sizeof(line) - static_cast<size_t>(n) - 1, format, args);
  va_end(args);
  size_t len = m < 0 ? static_cast<size_t>(n)
                     : std::min(sizeof(line) - 2, static_cast<size_t>(n) + static_cast<size_t>(m));
  line[len++] = '\n';
  (void)!::write(STDERR_FILENO, line, len);
}

}  // namespace sbx::relay
