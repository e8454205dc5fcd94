// Grows the process's fd table ahead of need. The kernel doubles the table
// when an fd is wanted beyond it, and while the table is shared by several
// threads it waits for an RCU grace period before freeing the old one
// (expand_fdtable in fs/file.c): the thread that asked and every other
// thread that opens an fd meanwhile sleep for it, milliseconds to tens of
// them. A front end takes its largest burst of fds exactly when it can
// least afford to stop, and each doubling on the way up stops it again.
// Grown once at start, the table is never shrunk, and those waits never
// come (docs/benchmarks.md, "Stalls": what the benchmark found).
#ifndef SBX_ENGINE_SYS_FD_TABLE_H_
#define SBX_ENGINE_SYS_FD_TABLE_H_

namespace sbx {

// How many fds a table grown at start should hold, for a soft
// RLIMIT_NOFILE of `limit`: all of them, up to 65,536 (then the kernel's
// table is 512 KiB of pointers; beyond that it still grows when needed).
int FdTableTarget(unsigned long long limit);

// Makes the fd table hold at least `fds` descriptors (a dup to fd fds-1,
// closed at once). Cheapest before the process starts threads: then no
// grace period is waited for even now. Returns 0, or an errno: EINVAL when
// `fds` is below 1 or above the soft RLIMIT_NOFILE (fcntl's F_DUPFD).
int GrowFdTable(int fds);

// GrowFdTable(FdTableTarget(the soft RLIMIT_NOFILE)): call it after raising
// the limit and before starting threads.
int GrowFdTableForLimit();

// The table's size now ("FDSize" in /proc/self/status), or -1.
int FdTableSize();

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_FD_TABLE_H_
