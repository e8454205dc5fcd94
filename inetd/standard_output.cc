#include "inetd/standard_output.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/sys/stderr_log.h"

namespace sbx::inetd {

bool FinishStandardOutput() {
  errno = 0;
  const bool flushed = std::fflush(stdout) == 0;
  const int error = errno;
  if (flushed && !std::ferror(stdout)) return true;
  // A write that failed before the flush (a line longer than the buffer)
  // leaves the error flag but perhaps no errno of its own.
  Log("stdout: write error: %s", error != 0 ? std::strerror(error) : "an earlier write failed");
  return false;
}

}  // namespace sbx::inetd
