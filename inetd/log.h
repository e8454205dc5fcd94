// One-line diagnostics on stderr, prefixed with the program's name.
//
// The inetd tools are small single-threaded processes whose stderr is read by
// a supervisor or a terminal; a line per event is all they need. SetLogName
// is called once from main; Log is printf-like and appends the newline.
#ifndef SBX_INETD_LOG_H_
#define SBX_INETD_LOG_H_

namespace sbx::inetd {

void SetLogName(const char* argv0);
const char* LogName();

[[gnu::format(printf, 1, 2)]] void Log(const char* format, ...);

}  // namespace sbx::inetd

#endif  // SBX_INETD_LOG_H_
