// The process's fd budget: its limit, raised, and its table, grown ahead of
// need.
//
// Why grow the table: the kernel doubles it when an fd beyond it is wanted
// (expand_files in fs/file.c), and while several threads share the table
// it first waits for an RCU grace period, so that no lockless reader still
// sees the old one; the thread that asked, and every other thread that
// takes an fd meanwhile, sleep for it, milliseconds to tens of them. A front
// end takes its largest burst of fds exactly when it can least afford to
// stop, and each doubling on the way up stops it again. Grown once at start,
// the table is never shrunk, and those waits never come
// (docs/architecture.md, "The fd table").
#ifndef SBX_ENGINE_SYS_FD_TABLE_H_
#define SBX_ENGINE_SYS_FD_TABLE_H_

#include <cstdint>

namespace sbx {

struct FdLimit {
  uint64_t before = 0;  // soft RLIMIT_NOFILE at start
  uint64_t now = 0;     // after raising it to the hard limit
};

// Raises the soft RLIMIT_NOFILE to the hard limit (a connection holds an fd
// from accept to hand-over; 1024 is a small budget for a front end).
FdLimit RaiseFdLimit();

// How many fds a table grown at start should hold, for a soft
// RLIMIT_NOFILE of `limit`: all of them, up to 65,536 (then the kernel's
// table is 512 KiB of pointers; beyond that it still grows when needed).
int FdTableTarget(unsigned long long limit);

// Makes the fd table hold at least `fds` descriptors (a dup of an eventfd
// to fd fds-1, both closed at once: no file system needed, so it works
// after a chroot). Cheapest before the process starts threads: then no
// grace period is waited for even now. Returns 0, or an errno: EINVAL when
// `fds` is below 1 or above the soft RLIMIT_NOFILE.
int GrowFdTable(int fds);

// GrowFdTable(FdTableTarget(the soft RLIMIT_NOFILE)): call it after raising
// the limit and before starting threads.
int GrowFdTableForLimit();

// The table's size now ("FDSize" in /proc/self/status), or -1 without /proc.
int FdTableSize();

}  // namespace sbx

#endif  // SBX_ENGINE_SYS_FD_TABLE_H_
