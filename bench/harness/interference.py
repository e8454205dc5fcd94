"""What disturbed a sample from outside: CPU time the hypervisor gave to
other guests while ours wanted it (steal, /proc/stat), and how often the
kernel's softirq work ran out of its budget and was left to ksoftirqd
(time_squeeze, /proc/net/softnet_stat). On shared cores the more of either
a round had, the longer its tail, whichever scenario it measured: a
connection's handshake runs in softirq, and ksoftirqd is a thread that
waits its turn for a CPU. Both are the whole machine's, not a namespace's;
steal is summed over all CPUs."""
import os


def snapshot():
    """(steal ticks, time_squeeze events) now; None where unreadable."""
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
    return steal, squeezed


def delta(before, after):
    """(steal in ms, time_squeeze events) between two snapshots."""
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    steal = (
        (after[0] - before[0]) * 1000 / ticks_per_s if None not in (before[0], after[0]) else None
    )
    squeezed = after[1] - before[1] if None not in (before[1], after[1]) else None
    return steal, squeezed
