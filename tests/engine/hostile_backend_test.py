"""Hostile backends (issue 18): one backend's receiver cannot take more of
the engine than its share, whatever it does, and the others keep being
served. The hostile receiver (tests/lib/hostile_receiver.py, a process of its own) never acks,
re-binds its path, or floods the engine with answers; a good backend beside
it takes a steady load throughout and must lose nothing.

What is asserted are bounds that do not depend on the machine's speed: the
daemon's open fds, its io_uring_enter count, connections held past their
deadline, shutdown time against --dispatch-timeout. The good backend's
latency is measured (docs/daemon.md, "What one backend can cost the
others"), not asserted."""
import os
import re
import subprocess
import threading
import time

from engine_fixture import Engine, TopologyTest, engine_args, fetch, sbxtest, write
from hostile_receiver import HostileProcess

A = "2001:db8:1::"
TIMEOUT_MS = 1500


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


CROWD = """
import resource, socket, sys, time
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_INET6)
    s.setblocking(False)
    try:
        s.connect((sys.argv[1], 80))
    except BlockingIOError:
        pass
    socks.append(s)
print("open", flush=True)
time.sleep(120)
"""


class Crowd:
    """`count` connections to `host`:80 from `ns`, opened without waiting
    for anything (non-blocking connects) by a process of their own (not to
    take the test's good client's turns), kept open until closed."""

    def __init__(self, ns, host, count):
        self.proc = sbxtest.spawn(
            ["python3", "-c", CROWD, host, str(count)], ns=ns, stdout=subprocess.PIPE
        )

    def close(self):
        self.proc.kill()
        self.proc.wait()


class GoodClient:
    """One client fetching from the good backend again and again, every
    `gap` s: each fetch's time to the greeting, and what failed."""

    def __init__(self, ns, host, gap=0.002):
        self.ns, self.host, self.gap = ns, host, gap
        self.times, self.failures = [], []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            started = time.monotonic()
            try:
                got = fetch(self.ns, self.host, 80, timeout=10)
            except OSError as e:
                got = repr(e).encode()
            if got == b"good":
                self.times.append(time.monotonic() - started)
            else:
                self.failures.append(got)
            time.sleep(self.gap)

    def stop(self):
        self.running = False
        self.thread.join(timeout=15)
        return self

    def percentiles(self):
        t = sorted(self.times)
        if not t:
            return "no fetch finished"
        return (
            f"{len(t)} fetches, p50 {t[len(t) // 2] * 1000:.2f} ms, "
            f"p99 {t[min(len(t) - 1, len(t) * 99 // 100)] * 1000:.2f} ms"
        )


class HostileBackendTest(TopologyTest):
    def measure_alone(self, seconds=1.0):
        """The good backend's latency before the hostile starts."""
        alone = GoodClient(self.topo.client, f"{A}1")
        time.sleep(seconds)
        return alone.stop()

    def attack(self, count, timeout):
        """A good client fetching throughout, and `count` connections at
        once to the hostile backend, until it took them all: the client."""
        good = GoodClient(self.topo.client, f"{A}1")
        self.addCleanup(good.stop)
        self.addCleanup(Crowd(self.topo.client, f"{A}2", count).close)
        sbxtest.wait_for(
            lambda: self.bad.taken >= count,
            timeout=timeout,
            what=f"the hostile backend to take {count}",
        )
        return good

    def report(self, alone, beside):
        # Measured, not asserted (TAP diagnostics, in the test log).
        print(
            f"# {self._testMethodName}: good backend alone: {alone.percentiles()}; "
            f"beside the hostile one: {beside.percentiles()}",
            flush=True,
        )

    def start(self, mode, *extra, wrapper=(), **kw):
        self.engine = Engine(
            self.engine_args(mode, *extra, **kw), ns=self.topo.server, wrapper=wrapper
        )
        self.addCleanup(lambda: self.engine.proc.poll() is None and self.engine.stop())

    def engine_args(self, mode, *extra, **kw):
        good = self.backend("good")
        bad_path = self.topo.path("bad.sock")
        self.bad = HostileProcess(bad_path, self.topo.server, mode, **kw)
        self.addCleanup(self.bad.close)
        conf = write(
            self.topo.path("socketbox.conf"),
            f"""max-rules:1
rule-set:0 size:2
ip:{A}1 jump-unix:{good.path}
ip:{A}2 jump-unix:{bad_path}
""",
        )
        return engine_args(
            conf, "--dispatch-timeout", str(TIMEOUT_MS), *extra, kernel_dispatch="off"
        )

    def test_a_never_acking_backend_holds_at_most_its_share(self):
        # A long deadline: only the share releases what it holds.
        self.start("never_ack", "--dispatch-timeout", "30000", hoard=100000)
        baseline = open_fds(self.engine.proc.pid)
        alone = self.measure_alone()
        good = self.attack(5000, timeout=60)
        held = open_fds(self.engine.proc.pid) - baseline
        self.report(alone, good.stop())
        st = self.engine.stats(settle=False)
        # Its share: an eighth of the worker's 16,384 slots (the fd limit is
        # higher here). Every connection it took beyond that was released
        # unconfirmed: the daemon keeps no more than the share for it.
        self.assertLessEqual(held, 2048 + 16, (baseline, held))
        # What it took beyond the share was released unconfirmed (the last
        # sends' results may still be coming in).
        sbxtest.wait_for(
            lambda: self.engine.stats(settle=False).get("unconfirmed", 0) >= 5000 - 2048,
            timeout=10,
            what="all but the share released",
        )
        self.assertEqual(good.failures, [])
        self.assertGreater(len(good.times), 0)
        self.assertEqual(st.get("dropped", 0), 0)
        self.assertEqual(st.get("accept_slot_pauses", 0), 0)

    def test_at_a_small_fd_limit_the_share_follows_it(self):
        # The case: at ulimit -n 4096 a never-acking backend filled
        # the fd table, and the good backend's p99 reached 923 ms. The share
        # is an eighth of the worker's part of the fd limit: 512 here.
        self.start(
            "never_ack",
            "--dispatch-timeout",
            "30000",
            hoard=100000,
            wrapper=["prlimit", "--nofile=4096:4096"],
        )
        baseline = open_fds(self.engine.proc.pid)
        good = self.attack(3000, timeout=60)
        held = open_fds(self.engine.proc.pid) - baseline
        good.stop()
        print(
            f"# at fd limit 4096: {held} fds held for the hostile backend; good backend: "
            f"{good.percentiles()}",
            flush=True,
        )
        self.assertLessEqual(held, 512 + 16)
        self.assertEqual(good.failures, [])
        st = self.engine.stats(settle=False)
        self.assertEqual(st.get("dropped", 0), 0)
        self.assertEqual(st.get("accept_resource_pauses", 0), 0)

    def test_an_honest_backend_under_the_same_burst_for_comparison(self):
        # The yardstick for the never-acking case: the same 5,000 at once to
        # a backend that acks all it takes. What the good backend sees here
        # is the burst's own cost on this machine, not a hostile's.
        self.start("honest", hoard=100000)
        alone = self.measure_alone()
        good = self.attack(5000, timeout=60)
        self.report(alone, good.stop())
        self.assertEqual(good.failures, [])
        # Nothing lost; some held ones may have been released unconfirmed
        # (a burst past its share waits for acks the same way).
        self.assertEqual(self.engine.stats(settle=False).get("dropped", 0), 0)

    def test_a_backend_that_rebinds_cannot_keep_connections_for_ever(self):
        self.start("rebind", rebind_s=0.3, hoard=0)
        alone = self.measure_alone()
        good = self.attack(1000, timeout=20)
        # Every connection's deadline was set at accept: well after it, the
        # engine holds none of them, however often they were sent again.
        time.sleep(TIMEOUT_MS / 1000 + 1.0)
        self.report(alone, good.stop())
        self.assertEqual(good.failures, [])
        st = self.engine.stats(settle=False)
        self.assertEqual(st["accepted"], st["dispatched"] + st["dropped"], st)
        self.assertGreater(self.bad.rebinds, 2)
        # SIGTERM with the hostile still at it: bounded by the timeout.
        started = time.monotonic()
        self.assertEqual(self.engine.stop(), 0)
        self.assertLess(time.monotonic() - started, TIMEOUT_MS / 1000 + 3)
        # Each batch sent again is logged with the path and its count, at
        # most a line a second however often the backend re-binds.
        lines = re.findall(
            r"backend (\S+): (\d+) connection\(s\) its receiver had not taken " r"are sent again",
            self.engine.output(),
        )
        self.assertTrue(lines, self.engine.output())
        self.assertEqual({path for path, _ in lines}, {self.topo.path("bad.sock")})
        self.assertLessEqual(sum(int(n) for _, n in lines), st["redelivered"])
        self.assertLess(len(lines), self.bad.rebinds, lines)

    def test_an_upgrade_beside_a_never_acking_backend_is_bounded(self):
        # Before: with about 60 held, --upgrade stalled every route (p50
        # 5.9 s, max 15.7 s): the successor waited for the old daemon's
        # drain, which waits for the held ones. Held connections now end at
        # their deadline (3 s here), and the old daemon says STOPPED as soon
        # as it accepts nothing more: the successor serves meanwhile.
        handover = self.topo.path("handover.sock")
        args = self.engine_args(
            "never_ack",
            "--handover",
            handover,
            "--handover-grace",
            "1",
            "--dispatch-timeout",
            "3000",
        )
        old = Engine(args, ns=self.topo.server)
        self.addCleanup(lambda: old.proc.poll() is None and old.stop())
        crowd = Crowd(self.topo.client, f"{A}2", 300)
        self.addCleanup(crowd.close)
        sbxtest.wait_for(lambda: self.bad.taken >= 300, timeout=20, what="connections held")
        good = GoodClient(self.topo.client, f"{A}1")
        self.addCleanup(good.stop)
        time.sleep(0.3)
        started = time.monotonic()
        new = Engine(args, ns=self.topo.server)
        self.addCleanup(lambda: new.proc.poll() is None and new.stop())
        self.assertEqual(old.proc.wait(timeout=30), 0, old.output())
        took = time.monotonic() - started
        time.sleep(0.3)
        good.stop()
        t = sorted(good.times)
        print(
            f"# upgrade beside {self.bad.taken} held: the old daemon left after {took:.2f} s; "
            f"good backend: {good.percentiles()}, max {t[-1] * 1000:.1f} ms",
            flush=True,
        )
        self.assertEqual(good.failures, [])
        # --dispatch-timeout (3 s) and the grace (1 s), plus a small constant.
        self.assertLess(took, 3 + 1 + 3)
        # No route waits for the old daemon's drain (before: the slowest
        # fetch took the drain's length, 1.09 s of 1.5 in each of 3 runs).
        self.assertLess(t[len(t) // 2], 0.05)
        self.assertLess(t[-1], 1.5)
        self.assertEqual(new.stop(), 0)

    def test_an_answer_flood_is_read_in_batches(self):
        self.start("flood", flood=256)
        alone = self.measure_alone()
        enters_alone = self.engine.stats(settle=False)["uring_enter"]
        good = self.attack(300, timeout=20)
        time.sleep(1.0)
        self.report(alone, good.stop())
        st = self.engine.stats(settle=False)
        st["uring_enter"] -= enters_alone
        # Before, one io_uring_enter per answer (76,885 enters for 76,801
        # datagrams here; 1.39 M for 1.39 M in the report). Now a RECV's
        # completion reads up to 64 more at once, and a receiver that has
        # answered more than twice per fd it was sent is read 64 answers per
        # 10 ms: the rest waits in its own send buffer, and its sends fail.
        # The enters counted include the good client's beside it.
        attempts = self.bad.sent + self.bad.refused
        self.assertGreater(attempts, 300 * 256)
        self.assertGreater(self.bad.refused, 0)
        self.assertLess(
            st["uring_enter"], attempts / 4, (st["uring_enter"], self.bad.sent, attempts)
        )
        self.assertEqual(good.failures, [])


if __name__ == "__main__":
    sbxtest.run_tap(HostileBackendTest, skip_reason=sbxtest.require_root_and_netns())
