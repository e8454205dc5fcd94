#include "engine/sys/stderr_log.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace sbx {
namespace {
const char* log_name = nullptr;  // nullptr: program_invocation_short_name
}  // namespace

void SetLogName(const char* argv0) {
  if (argv0 == nullptr || *argv0 == '\0') return;
  const char* slash = std::strrchr(argv0, '/');
  log_name = slash != nullptr ? slash + 1 : argv0;
}

const char* LogName() { return log_name != nullptr ? log_name : program_invocation_short_name; }

void Log(const char* format, ...) {
  char line[1024];
  const int n = std::snprintf(line, sizeof(line), "%s: ", LogName());
  if (n < 0) return;
  // The prefix may fill the buffer; the text then is cut to nothing.
  const size_t prefix = std::min(sizeof(line) - 2, static_cast<size_t>(n));
  va_list args;
  va_start(args, format);
  // clang-tidy 14's analyzer takes this va_list for uninitialized (a false
  // positive: va_start is right above).
  const int m = std::vsnprintf(  // NOLINT(clang-analyzer-valist.Uninitialized)
      line + prefix, sizeof(line) - prefix - 1, format, args);
  va_end(args);
  size_t len = m < 0 ? prefix : std::min(sizeof(line) - 2, prefix + static_cast<size_t>(m));
  line[len++] = '\n';
  // Best effort: a closed or full stderr must not stop the program.
  (void)!::write(STDERR_FILENO, line, len);
}

void LogEachLine(std::string_view text) {
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    Log("%.*s", static_cast<int>(end), text.data());
    text.remove_prefix(std::min(end + 1, text.size()));
  }
}

}  // namespace sbx
