// The file descriptors open in this process, listed from /proc/self/fd.
// The daemon takes this list first thing at start-up: it is the set of fds
// it inherited, the only ones a configuration may name (a reload that names
// a number the daemon has since opened itself must not be taken for one).
#ifndef SBX_ENGINE_SYS_OPEN_FDS_H_
#define SBX_ENGINE_SYS_OPEN_FDS_H_

#include <vector>

namespace sbx {

// Sorted ascending. Without /proc, each fd below the soft RLIMIT_NOFILE (at
// most 65,536 of them) is tried with fcntl(F_GETFD).
std::vector<int> OpenFds();

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_OPEN_FDS_H_
