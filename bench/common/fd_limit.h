// Raises the soft RLIMIT_NOFILE to the hard limit: a burst of 10,000
// simultaneous connections needs more than the usual 1024 descriptors.
#ifndef SBX_BENCH_COMMON_FD_LIMIT_H_
#define SBX_BENCH_COMMON_FD_LIMIT_H_

#include <sys/resource.h>

namespace sbx::bench {

inline void RaiseFdLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace sbx::bench

#endif  // SBX_BENCH_COMMON_FD_LIMIT_H_
