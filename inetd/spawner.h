// Starts one inetd child: a new session, the connection on fds 0 and 1,
// stderr inherited, signal mask empty and the daemon's signals at their
// defaults, then exec of PROG (searched in PATH) with the given environment.
//
// kPosixSpawn uses posix_spawnp(3) with POSIX_SPAWN_SETSID; glibc runs it as
// clone(CLONE_VM|CLONE_VFORK), so no page tables are copied, and an exec
// failure (ENOENT, EACCES) comes back as the call's error. kFork is the
// original's fork+exec; an exec failure there is exit status 127 in the child
// (logged by the child, counted by the parent when it reaps).
//
// The connection fd is expected to carry FD_CLOEXEC (ReceiveFd sets it), so
// the child gets it only as 0 and 1; every other fd of the daemon must be
// CLOEXEC too (they are: nothing here opens an fd without it).
#ifndef SBX_INETD_SPAWNER_H_
#define SBX_INETD_SPAWNER_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "engine/sys/sys_result.h"
#include "inetd/options.h"

namespace sbx::inetd {

class Spawner {
 public:
  Spawner(SpawnMethod method, std::vector<std::string> program);

  // The child's pid, or the errno of fork / posix_spawn.
  SysResult<pid_t> Spawn(int connection_fd, char* const* envp);

  const std::string& program_name() const { return program_[0]; }

 private:
  SpawnMethod method_;
  std::vector<std::string> program_;
  std::vector<char*> argv_;
};

// Signals the daemon blocks (it reads them through a signalfd); children get
// them unblocked and at their default action.
void DaemonSignals(sigset_t* set);

}  // namespace sbx::inetd

#endif  // SBX_INETD_SPAWNER_H_
