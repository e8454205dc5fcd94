"""Wake-ups of any server, counted around one load step: io_uring_enter
and all system calls by `perf stat` attached to the process (tracepoints
syscalls:sys_enter_io_uring_enter and raw_syscalls:sys_enter: exact counts,
no sampling), context switches from /proc/PID/task/*/status (voluntary and
not). Works for servers without counters of their own (direct, externals);
for the engine its own uring_enter counter is the cross-check."""
import os
import shutil
import signal
import subprocess
import time

EVENTS = {
    "syscalls:sys_enter_io_uring_enter": "io_uring_enter",
    "raw_syscalls:sys_enter": "syscalls",
}


def context_switches(pid):
    """Voluntary + involuntary context switches of every thread of `pid`."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
        except OSError:
            continue  # a thread that ended in between
    return total


def on_cpu_seconds(pid):
    """Time on a CPU of every thread of `pid`, from /proc/PID/task/*/schedstat
    (nanoseconds, exact; utime+stime in /proc/PID/stat are counted in 10 ms
    ticks, too coarse for a capped server over a one-second step). None
    without schedstat."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            continue  # a thread that ended in between
        except (OSError, ValueError, IndexError):
            return None
    return total / 1e9


def perf_usable():
    if not shutil.which("perf"):
        return False
    r = subprocess.run(
        ["perf", "stat", "-x,", "-e", ",".join(EVENTS), "--", "true"],
        capture_output=True,
        text=True,
    )
    return r.returncode == 0 and "not supported" not in r.stderr


class Counting:
    """perf stat on `pid` from start() to stop(); stop() returns the counts
    ({'io_uring_enter': n, 'syscalls': n}) or None without perf."""

    def __init__(self, pid, out_path, enabled):
        self.pid, self.out_path, self.enabled = pid, out_path, enabled
        self.proc = None

    def start(self):
        if not self.enabled:
            return
        self.proc = subprocess.Popen(
            [
                "perf",
                "stat",
                "-x,",
                "-o",
                self.out_path,
                "-p",
                str(self.pid),
                "-e",
                ",".join(EVENTS),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(0.15)  # attached before the load starts

    def stop(self):
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        counts = {}
        try:
            with open(self.out_path) as f:
                for line in f:
                    fields = line.strip().split(",")
                    if len(fields) > 2 and fields[2] in EVENTS and fields[0].isdigit():
                        counts[EVENTS[fields[2]]] = int(fields[0])
        except OSError:
            return None
        return counts or None
