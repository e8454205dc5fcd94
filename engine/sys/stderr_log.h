// One-line diagnostics on stderr: "PREFIX: text\n", printf-like.
//
// Each line is built in one buffer and written with one write(2), so that
// the lines of threads (the relay's workers) and of processes sharing
// stderr (socketbox-inetd and its children) do not interleave. The prefix
// is set once, from main, before any thread starts; until then it is the
// program's name as the kernel knows it. A line longer than the buffer is
// cut, never split.
#ifndef SBX_ENGINE_SYS_STDERR_LOG_H_
#define SBX_ENGINE_SYS_STDERR_LOG_H_

#include <string_view>

namespace sbx {

// The prefix: the last component of `argv0` ("/usr/bin/socket-query" gives
// "socket-query"), or `argv0` itself ("socketbox-relay"). nullptr or "": no
// change.
void SetLogName(const char* argv0);
const char* LogName();

[[gnu::format(printf, 1, 2)]] void Log(const char* format, ...);

// Each line of `text` ('\n' ends one) as a line of its own, prefixed: a
// usage text with its option lines.
void LogEachLine(std::string_view text);

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_STDERR_LOG_H_
