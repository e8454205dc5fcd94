"""What disturbed a sample from outside: CPU time the hypervisor gave to
other guests while ours wanted it (steal, /proc/stat), and how often the
kernel's softirq work ran out of its budget and was left to ksoftirqd
(time_squeeze, /proc/net/softnet_stat). On shared cores the more of either
a round had, the longer its tail, whichever scenario it measured: a
connection's handshake runs in softirq, and ksoftirqd is a thread that
waits its turn for a CPU. Both are the whole machine's, not a namespace's;
steal is summed over all CPUs. ksoftirqd's own books (/proc/PID/schedstat)
say how long that deferred work ran and how long it waited for a CPU: a
handshake left to ksoftirqd waits as long as it does."""
import os


def _ksoftirqd_pids():
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().startswith("ksoftirqd/"):
                    pids.append(entry)
        except OSError:
            pass
    return pids


_KSOFTIRQD = None


def _ksoftirqd_ns():
    """(run ns, runqueue wait ns) of all ksoftirqd threads, or (None, None)."""
    global _KSOFTIRQD
    if _KSOFTIRQD is None:
        _KSOFTIRQD = _ksoftirqd_pids()
    run = wait = 0
    try:
        for pid in _KSOFTIRQD:
            with open(f"/proc/{pid}/schedstat") as f:
                fields = f.read().split()
            run += int(fields[0])
            wait += int(fields[1])
    except (OSError, ValueError, IndexError):
        return None, None
    return (run, wait) if _KSOFTIRQD else (None, None)


def snapshot():
    """(steal ticks, time_squeeze events, ksoftirqd run ns, ksoftirqd wait
    ns) now; None where unreadable."""
    steal = squeezed = None
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        if fields and fields[0] == "cpu" and len(fields) > 8:
            steal = int(fields[8])
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/net/softnet_stat") as f:
            squeezed = sum(int(line.split()[2], 16) for line in f if len(line.split()) > 2)
    except (OSError, ValueError):
        pass
    return (steal, squeezed) + _ksoftirqd_ns()


def delta(before, after):
    """(steal ms, time_squeeze events, ksoftirqd run ms, ksoftirqd wait ms)
    between two snapshots."""
    ticks_per_s = os.sysconf("SC_CLK_TCK")

    def diff(i, scale=1.0):
        return (after[i] - before[i]) * scale if None not in (before[i], after[i]) else None

    return diff(0, 1000 / ticks_per_s), diff(1), diff(2, 1e-6), diff(3, 1e-6)
