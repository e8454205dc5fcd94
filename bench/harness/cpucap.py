"""A fixed CPU budget for the server under test (capacity mode).

The server (and only the server: the generator and, behind an accepting
server, the sinks stay outside) is put in a cgroup of its own with a CPU
bandwidth quota of `budget` CPUs:

  cgroup-v2   cpu.max "QUOTA PERIOD" in a child of a cgroup2 mount whose
              cgroup.controllers offers cpu
  cgroup-v1   cpu.cfs_period_us / cpu.cfs_quota_us in the v1 cpu hierarchy
  affinity    no cpu controller: sched_setaffinity to the last CPU (a whole
              CPU, shared with whatever else the scheduler puts there; the
              budget is then 1 CPU, and the report says so)

The period is short (10 ms; longer for budgets under 0.1 CPU, whose quota
would be under the kernel's 1 ms minimum): a quota is spent in bursts, and a throttled
server holds every connection until the next period starts, which a 100 ms
period would add to every latency percentile. Directory names carry the
harness's pid (sbxb<pid>), so a later run can remove the leftovers of a
killed one (sweep_stale).
"""
import glob
import os
import re
import time

PREFIX = "sbxb"
PERIOD_US = 10000
MIN_QUOTA_US = 1000


def _read(path):
    with open(path) as f:
        return f.read()


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _cgroup2_root():
    """A cgroup2 mount point that offers the cpu controller, or None."""
    try:
        mounts = _read("/proc/self/mounts").splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            try:
                if "cpu" in _read(os.path.join(fields[1], "cgroup.controllers")).split():
                    return fields[1]
            except OSError:
                continue
    return None


def _cgroup1_root():
    for path in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
        if os.path.exists(os.path.join(path, "cpu.cfs_quota_us")):
            return path
    return None


class CpuCap:
    """One cgroup (or CPU) the capped server runs in, for the whole run."""

    def __init__(self, budget):
        if not 0.01 <= budget <= (os.cpu_count() or 1):
            raise ValueError(f"--cpu-budget wants 0.01 to {os.cpu_count()} CPUs, not {budget}")
        self.method, self.path, self.cpu = None, None, None
        name = f"{PREFIX}{os.getpid()}"
        root2, root1 = _cgroup2_root(), _cgroup1_root()
        errors = []
        for method, root, make in (
            ("cgroup-v2", root2, self._make_v2),
            ("cgroup-v1", root1, os.mkdir),
        ):
            if not root:
                continue
            try:
                make(os.path.join(root, name))
                self.method, self.path = method, os.path.join(root, name)
                self.set_budget(budget)
                return
            except OSError as e:
                errors.append(f"{method} at {root}: {e}")
                self.remove()
        # No cpu controller we may use: one CPU of our choosing.
        self.method, self.cpu, self.budget = "affinity", (os.cpu_count() or 1) - 1, 1.0
        self.period_us = None
        self.fallback_reason = "; ".join(errors) or "no cgroup cpu controller mounted"

    @staticmethod
    def _make_v2(path):
        subtree = os.path.join(os.path.dirname(path), "cgroup.subtree_control")
        if "cpu" not in _read(subtree).split():
            _write(subtree, "+cpu")
        os.mkdir(path)

    def set_budget(self, budget):
        """Sets (or changes, for the processes already inside) the quota."""
        if self.method == "affinity":
            return
        self.budget = budget
        # The kernel's smallest quota is 1 ms: small budgets get a longer period.
        self.period_us = max(PERIOD_US, -(-MIN_QUOTA_US * 1000 // int(budget * 1000)))
        quota = int(budget * self.period_us)
        if self.method == "cgroup-v2":
            _write(os.path.join(self.path, "cpu.max"), f"{quota} {self.period_us}")
        else:
            # v1 checks quota/period against the parent on each write: shrink
            # the quota first (-1: unlimited), then set the period, then it.
            _write(os.path.join(self.path, "cpu.cfs_quota_us"), "-1")
            _write(os.path.join(self.path, "cpu.cfs_period_us"), str(self.period_us))
            _write(os.path.join(self.path, "cpu.cfs_quota_us"), str(quota))

    def add(self, pid):
        """Moves process `pid` with all its threads under the cap."""
        if self.method == "affinity":
            for tid in os.listdir(f"/proc/{pid}/task"):
                os.sched_setaffinity(int(tid), {self.cpu})
            return
        # cgroup.procs moves the whole thread group (v1 and v2); threads made
        # later are born inside.
        _write(os.path.join(self.path, "cgroup.procs"), str(pid))

    def throttled(self):
        """(periods throttled, throttled seconds) so far, or None."""
        if self.method not in ("cgroup-v1", "cgroup-v2"):
            return None
        try:
            text = _read(os.path.join(self.path, "cpu.stat"))
        except OSError:
            return None
        stat = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        if self.method == "cgroup-v1":
            return int(stat.get("nr_throttled", 0)), int(stat.get("throttled_time", 0)) / 1e9
        return int(stat.get("nr_throttled", 0)), int(stat.get("throttled_usec", 0)) / 1e6

    def describe(self):
        if self.method == "affinity":
            return (
                f"pinned to CPU {self.cpu} (sched_setaffinity; not exclusive: "
                f"{self.fallback_reason})"
            )
        quota = int(self.budget * self.period_us)
        knob = "cpu.max" if self.method == "cgroup-v2" else "cpu.cfs_quota_us/cfs_period_us"
        return (
            f"{self.method} {knob} {quota}/{self.period_us} us = {self.budget:g} CPU "
            f"({self.path})"
        )

    def as_dict(self):
        return {
            "method": self.method,
            "budget_cpus": self.budget,
            "period_us": self.period_us,
            "path": self.path,
            "cpu": self.cpu,
            "description": self.describe(),
        }

    def remove(self):
        """Removes the cgroup once its processes are gone (they are killed
        before this runs; a zombie may take a moment to leave)."""
        if not self.path:
            return
        for _ in range(50):
            try:
                os.rmdir(self.path)
                self.path = None
                return
            except FileNotFoundError:
                self.path = None
                return
            except OSError:
                time.sleep(0.1)


def sweep_stale():
    """Removes capacity cgroups of runs whose harness is gone."""
    swept = []
    roots = [r for r in (_cgroup2_root(), _cgroup1_root()) if r]
    for root in roots:
        for path in glob.glob(os.path.join(root, f"{PREFIX}*")):
            m = re.fullmatch(rf"{PREFIX}(\d+)", os.path.basename(path))
            if m and not os.path.exists(f"/proc/{m.group(1)}"):
                try:
                    os.rmdir(path)
                    swept.append(path)
                except OSError:
                    pass
    return swept
