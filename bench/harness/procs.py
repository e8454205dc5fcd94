"""Processes of one run: started in a namespace with their output in files,
stopped by signal (killed after a grace period), and always gone at exit.
Also the /proc readings the metrics need (CPU ticks, RSS, threads)."""
import ctypes
import json
import os
import resource
import signal
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
_live = []


_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _limits():
    # Killed with the harness, even by SIGKILL (survives the exec of
    # `ip netns exec` and of the tool: no set-uid involved).
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # A 10,000-connection burst needs more than 1024 descriptors per process.
    for n in (1 << 20, 262144, 65536):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
            return
        except (ValueError, OSError):
            continue
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Proc:
    def __init__(self, argv, ns, out_path, err_path):
        self.argv = argv
        self.out_path, self.err_path = out_path, err_path
        cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            # `ip netns exec` execs the command: the pid is the tool's own.
            self.popen = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_limits,
            )
        self.pid = self.popen.pid
        _live.append(self)

    def out(self):
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def err(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def alive(self):
        return self.popen.poll() is None

    def send(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def wait_for(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if not self.alive():
                raise RuntimeError(
                    f"{self.argv[0]} exited ({self.popen.returncode}) while waiting "
                    f"for {what}: {self.err()[-2000:]}"
                )
            time.sleep(0.02)
        raise RuntimeError(f"timed out after {timeout}s waiting for {what} from {self.argv[0]}")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signals, waits; kills the whole group after `timeout`. Exit code."""
        self.send(sig)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill(self)
        if self in _live:
            _live.remove(self)
        return self.popen.returncode

    def run_to_end(self, timeout):
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill(self)
            raise RuntimeError(f"{self.argv[0]} did not finish within {timeout}s")
        if self in _live:
            _live.remove(self)
        return self.popen.returncode

    def json_lines(self):
        lines = []
        for line in self.out().splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    pass
        return lines

    def cpu_seconds(self):
        """utime + stime of every thread, from /proc/PID/stat."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def threads(self):
        return sorted(int(t) for t in os.listdir(f"/proc/{self.pid}/task"))


def kill(p):
    if p.alive():
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            p.popen.kill()
    try:
        p.popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    if p in _live:
        _live.remove(p)


def kill_all():
    for p in list(_live):
        kill(p)
