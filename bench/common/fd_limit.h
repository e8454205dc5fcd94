// Raises the soft RLIMIT_NOFILE to the hard limit (a burst of 10,000
// simultaneous connections needs more than the usual 1024 descriptors),
// and grows the fd table to match while the tool has one thread: a table
// grown under load stalls every thread of the tool for an RCU grace period
// (engine/sys/fd_table.h), and the stall would be measured as the server's.
#ifndef SBX_BENCH_COMMON_FD_LIMIT_H_
#define SBX_BENCH_COMMON_FD_LIMIT_H_

#include <sys/resource.h>

#include "engine/sys/fd_table.h"

namespace sbx::bench {

inline void RaiseFdLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  GrowFdTableForLimit();
}

}  // namespace sbx::bench

#endif  // SBX_BENCH_COMMON_FD_LIMIT_H_
