#include "inetd/spawner.h"

#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/sys/stderr_log.h"

namespace sbx::inetd {

void DaemonSignals(sigset_t* set) {
  sigemptyset(set);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(set, sig);
}

Spawner::Spawner(SpawnMethod method, std::vector<std::string> program)
    : method_(method), program_(std::move(program)) {
  for (std::string& arg : program_) argv_.push_back(arg.data());
  argv_.push_back(nullptr);
}

namespace {

// What a child must not inherit from the daemon's signal set-up. SIGPIPE is
// included because inetd-style programs expect to die on a closed peer.
void ChildDefaultSignals(sigset_t* set) {
  DaemonSignals(set);
  sigaddset(set, SIGPIPE);
}

SysResult<pid_t> SpawnWithPosixSpawn(int fd, char* const* argv, char* const* envp) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  sigset_t empty, defaults;
  sigemptyset(&empty);
  ChildDefaultSignals(&defaults);
  posix_spawn_file_actions_adddup2(&actions, fd, 0);
  posix_spawn_file_actions_adddup2(&actions, fd, 1);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, static_cast<short>(POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                                     POSIX_SPAWN_SETSIGDEF));
  pid_t pid = -1;
  const int err = posix_spawnp(&pid, argv[0], &actions, &attr, argv, envp);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return SysResult<pid_t>::Error(err);
  return pid;
}

[[noreturn]] void ExecChild(int fd, char* const* argv, char* const* envp) {
  sigset_t defaults, empty;
  ChildDefaultSignals(&defaults);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sigismember(&defaults, sig) == 1) ::signal(sig, SIG_DFL);
  }
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);
  if (::setsid() < 0 || ::dup2(fd, 0) < 0 || ::dup2(fd, 1) < 0) {
    Log("child: setting up fds: %s", std::strerror(errno));
    ::_exit(126);
  }
  ::execvpe(argv[0], argv, envp);
  Log("child: exec %s: %s", argv[0], std::strerror(errno));
  ::_exit(127);
}

}  // namespace

SysResult<pid_t> Spawner::Spawn(int connection_fd, char* const* envp) {
  if (method_ == SpawnMethod::kPosixSpawn) {
    return SpawnWithPosixSpawn(connection_fd, argv_.data(), envp);
  }
  const pid_t pid = ::fork();
  if (pid < 0) return SysResult<pid_t>::FromErrno();
  if (pid == 0) ExecChild(connection_fd, argv_.data(), envp);
  return pid;
}

}  // namespace sbx::inetd
