#!/usr/bin/env python3
"""The benchmark tools against real sockets on loopback (no namespaces):
bench/sink (direct accept, "A" protocol, registration) and
bench/load_generator (greeting check, error taxonomy, bounds), and their
answers to bad input. TAP output; run by meson (suite 'bench')."""
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "harness"))
import figures  # noqa: E402
import merge  # noqa: E402
import receiver_protocol as rp  # noqa: E402
import sbxtest  # noqa: E402

BUILD = os.environ.get("SBX_BUILD", os.path.join(sbxtest.ROOT, "build"))
SINK = os.path.join(BUILD, "bench", "sink")
GEN = os.path.join(BUILD, "bench", "load_generator")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate(*args, timeout=60):
    r = subprocess.run([GEN, *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"load_generator exit {r.returncode}: {r.stderr}")
    return json.loads(r.stdout)


class Sink:
    def __init__(self, *args):
        self.p = sbxtest.spawn([SINK, *args], stdout=subprocess.PIPE)
        line = self.p.stdout.readline().decode()
        if line.strip() != "ready":
            raise AssertionError(f"sink not ready: {line!r} {self.p.stderr.read().decode()}")

    def summary(self):
        self.p.send_signal(signal.SIGUSR1)
        return json.loads(self.p.stdout.readline())

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        out = self.p.stdout.read().decode()
        self.p.wait(timeout=10)
        sbxtest.stop(self.p)
        return self.p.returncode, json.loads(out.strip().splitlines()[-1])


class Forwarder(threading.Thread):
    """A tiny acceptor: passes each accepted socket over `channel` (to `dest`
    if given), or closes it when `drop` says so."""

    def __init__(self, channel, dest=None, drop=lambda i: False):
        super().__init__(daemon=True)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(512)
        self.port = self.listener.getsockname()[1]
        self.channel, self.dest, self.drop = channel, dest, drop
        self.start()

    def run(self):
        i = 0
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if not self.drop(i):
                sbxtest.send_fd(self.channel, conn.fileno(), self.dest)
            conn.close()
            i += 1


class DirectTest(unittest.TestCase):
    def test_greetings_counted_and_misroutes_detected(self):
        port, closed = free_port(), free_port()
        sink = Sink("--listen", f"alpha=127.0.0.1:{port}", "--threads", "2")
        try:
            g = generate(
                "--target",
                f"127.0.0.1:{port}=alpha",
                "--target",
                f"127.0.0.1:{port}=beta",
                "--target",
                f"127.0.0.1:{closed}=alpha",
                "--connections",
                "300",
                "--concurrency",
                "16",
                "--threads",
                "2",
            )
            self.assertEqual(g["started"], 300)
            self.assertEqual(g["completed"], 100)
            self.assertEqual(g["errors"]["wrong_greeting"], 100)
            self.assertEqual(g["errors"]["refused"], 100)
            self.assertEqual(g["targets"][1]["wrong_example"], "alpha")
            self.assertGreater(g["latency_us"]["p50"], 0)
            self.assertEqual(sink.summary()["backends"]["alpha"]["received"], 200)
            # Its fd table grown before its threads (engine/sys/fd_table.h).
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            self.assertGreaterEqual(sbxtest.fd_table_size(sink.p.pid), min(hard, 65536))
        finally:
            code, summary = sink.stop()
        self.assertEqual(code, 0)
        self.assertEqual(summary["event"], "sink-exit")

    def test_epoll_and_uring_agree(self):
        port = free_port()
        sink = Sink("--listen", f"a=127.0.0.1:{port}")
        try:
            for io in ("uring", "epoll"):
                g = generate(
                    "--io",
                    io,
                    "--target",
                    f"127.0.0.1:{port}=a",
                    "--connections",
                    "500",
                    "--concurrency",
                    "8",
                )
                self.assertEqual((g["io"], g["completed"], sum(g["errors"].values())), (io, 500, 0))
        finally:
            sink.stop()

    def test_slowest_connections_are_the_tail(self):
        port = free_port()
        sink = Sink("--listen", f"a=127.0.0.1:{port}")
        try:
            runs = {
                io: generate(
                    "--io",
                    io,
                    "--target",
                    f"127.0.0.1:{port}=a",
                    "--target",
                    f"127.0.0.1:{port}=a",
                    "--connections",
                    "2000",
                    "--concurrency",
                    "16",
                )
                for io in ("uring", "epoll")
            }
        finally:
            sink.stop()
        for io, g in runs.items():
            kept = g["slowest"]
            self.assertEqual(g["completed"], 2000)
            self.assertEqual(len(kept), 512, io)
            self.assertEqual(kept, sorted(kept, key=lambda c: c[0]), io)
            self.assertGreater(g["start_ns"], 0)
            latencies = sorted(c[2] for c in kept)
            # The slowest quarter of 2,000: at or above the median, up to the maximum.
            self.assertGreaterEqual(latencies[0], g["latency_us"]["p50"] * 0.9, io)
            self.assertAlmostEqual(latencies[-1], g["latency_us"]["max"], delta=1.0)
            # Of the histogram's connections above the fastest kept, none was left out.
            above = sum(n for edge, n in g["buckets"] if edge / 1000 > latencies[0] * 1.05 + 1)
            self.assertLessEqual(above, 512, io)
            for start_us, handshake_us, latency_us, target in kept:
                self.assertLessEqual(start_us, g["elapsed_s"] * 1e6, io)
                self.assertIn(target, (0, 1))
                self.assertLessEqual(handshake_us, latency_us)
            handshakes = [c[1] for c in kept]
            if io == "uring":  # connect's completion is seen there, not with epoll
                self.assertTrue(all(h > 0 for h in handshakes), handshakes[:10])
            else:
                self.assertEqual(set(handshakes), {0})
        # Merged on one clock: the later run's starts move by the gap between
        # the two runs' starts.
        m = merge.merge([runs["uring"], runs["epoll"]])
        self.assertEqual(len(m["slowest"]), 1024)
        self.assertEqual(m["start_ns"], runs["uring"]["start_ns"])
        gap_us = (runs["epoll"]["start_ns"] - runs["uring"]["start_ns"]) // 1000
        self.assertGreater(gap_us, 0)
        moved = sorted(c[0] - gap_us for c in m["slowest"] if c[1] == 0)  # epoll's
        self.assertEqual(moved, sorted(c[0] for c in runs["epoll"]["slowest"]))

    def test_open_loop_rate_and_duration(self):
        port = free_port()
        sink = Sink("--listen", f"a=127.0.0.1:{port}")
        try:
            g = generate("--target", f"127.0.0.1:{port}=a", "--rate", "500", "--duration", "1")
            self.assertEqual(g["mode"], "open")
            self.assertTrue(450 <= g["started"] <= 510, g["started"])
            self.assertEqual(g["completed"], g["started"])
        finally:
            sink.stop()


class ChannelTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sbx-bench-test-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def test_datagram_backend_and_drops(self):
        path = os.path.join(self.tmp, "a.sock")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        stale.bind(path)  # a stale socket file from an earlier run is replaced
        stale.close()
        sink = Sink("--backend", f"a={path}")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o666)
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        fwd = Forwarder(sender, path, drop=lambda i: i % 10 == 9)
        fds_before = sbxtest.fd_count(sink.p.pid)
        for io in ("uring", "epoll"):
            g = generate(
                "--io",
                io,
                "--target",
                f"127.0.0.1:{fwd.port}=a",
                "--connections",
                "200",
                "--concurrency",
                "4",
            )
            self.assertEqual(g["completed"], 180)
            self.assertEqual(g["errors"]["no_greeting"], 20)
        self.assertEqual(sbxtest.fd_count(sink.p.pid), fds_before)  # no fd kept
        sender.sendto(b"no fd here", path)
        code, summary = sink.stop()
        fwd.listener.close()
        self.assertEqual(code, 0)
        self.assertEqual(summary["backends"]["a"]["received"], 360)
        self.assertEqual(summary["no_fd"], 1)
        self.assertFalse(os.path.exists(path), "the socket file is removed at exit")

    def pass_fds(self, sender, counts):
        """One message per entry of `counts`, with that many fresh
        connections; returns our ends."""
        ours = []
        for n in counts:
            pairs = [socket.socketpair() for _ in range(n)]
            rp.send_fds(sender, [theirs.fileno() for _, theirs in pairs])
            for mine, theirs in pairs:
                theirs.close()
                ours.append(mine)
        return ours

    def test_receiver_protocol(self):
        path = os.path.join(self.tmp, "a.sock")
        sink = Sink("--backend", f"a={path}", "--max-fds", "4", "--ack", "--threads", "2")
        sender = rp.autobound_sender(path)
        ours = self.pass_fds(sender, [1, 3, 6])  # the last: 2 beyond the declared 4
        got = rp.replies_until(sender, 10)
        for mine in ours[:8]:
            mine.settimeout(10)
            self.assertEqual(mine.recv(8), b"a")
        for mine in ours[8:]:
            mine.settimeout(10)
            self.assertEqual(mine.recv(8), b"")
        code, summary = sink.stop()
        self.assertEqual(code, 0)
        self.assertEqual(summary["backends"]["a"]["received"], 8, "every fd counts")
        self.assertEqual(summary["extra_fds"], 2)
        # Each worker greets the senders it hears from: one or two hellos.
        hellos = rp.hellos(got)
        self.assertIn(len(hellos), (1, 2), got)
        self.assertEqual(set(hellos), {(rp.HELLO, 4, True)})
        self.assertEqual(rp.acked(got), 10, "acks count every fd, those closed too")
        for s in [sender, *ours]:
            s.close()

    def test_default_sink_sends_nothing_back(self):
        path = os.path.join(self.tmp, "a.sock")
        sink = Sink("--backend", f"a={path}")
        sender = rp.autobound_sender(path)
        ours = self.pass_fds(sender, [1, 2])
        for mine in ours[:2]:
            mine.settimeout(10)
            self.assertEqual(mine.recv(8), b"a")
        self.assertEqual(rp.replies(sender), [])
        code, summary = sink.stop()
        self.assertEqual((summary["backends"]["a"]["received"], summary["extra_fds"]), (2, 1))
        for s in [sender, *ours]:
            s.close()

    def test_registration(self):
        ctl = os.path.join(self.tmp, "ctl.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server.bind(ctl)
        server.listen(1)
        sink_holder = {}
        t = threading.Thread(target=lambda: sink_holder.update(s=Sink("--register", f"r=7:{ctl}")))
        t.start()
        conn, _ = server.accept()
        self.assertEqual(conn.recv(16), bytes([1, 0, 0, 0, 0, 0, 0, 7]))
        conn.send(bytes([0x80, 0, 0, 0]))
        t.join(10)
        sink = sink_holder["s"]
        fwd = Forwarder(conn)
        g = generate(
            "--target", f"127.0.0.1:{fwd.port}=r", "--connections", "50", "--concurrency", "4"
        )
        self.assertEqual(g["completed"], 50)
        conn.close()  # the server goes away: the sink says so and keeps running
        sbxtest.wait_for(lambda: sink.summary()["channel_closed"] == 1, what="channel_closed")
        code, summary = sink.stop()
        fwd.listener.close()
        self.assertEqual((code, summary["backends"]["r"]["received"]), (0, 50))

    def test_timeout(self):
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # completes handshakes, never answers
        port = silent.getsockname()[1]
        for io in ("uring", "epoll"):
            t0 = time.monotonic()
            g = generate(
                "--io",
                io,
                "--target",
                f"127.0.0.1:{port}=x",
                "--connections",
                "5",
                "--concurrency",
                "5",
                "--timeout-ms",
                "300",
            )
            self.assertEqual(g["errors"]["timeout"], 5)
            self.assertLess(time.monotonic() - t0, 5)
        silent.close()


class BadInputTest(unittest.TestCase):
    def run_tool(self, *argv):
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=10)

    def test_usage_errors(self):
        cases = [
            [SINK],
            [SINK, "--listen", "a=nonsense"],
            [SINK, "--backend", "=x"],
            [SINK, "--register", "a=notanumber:/x"],
            [SINK, "--threads", "0", "--listen", "a=127.0.0.1:1"],
            [SINK, "--recv-depth", "0", "--listen", "a=127.0.0.1:1"],
            [SINK, "--max-fds", "65", "--listen", "a=127.0.0.1:1"],
            [SINK, "--max-fds", "0", "--listen", "a=127.0.0.1:1"],
            [GEN, "--target", "127.0.0.1:1=a"],  # unbounded
            [GEN, "--target", "127.0.0.1=a", "--connections", "1"],
            [GEN, "--target", "127.0.0.1:1=a", "--connections", "1", "--io", "poll"],
            [GEN, "--connections", "1"],
        ]
        for argv in cases:
            r = self.run_tool(*argv)
            self.assertEqual(r.returncode, 2, argv)
            self.assertIn("usage:", r.stderr, argv)

    def test_setup_errors(self):
        with tempfile.NamedTemporaryFile() as regular:
            r = self.run_tool(SINK, "--backend", f"a={regular.name}")
            self.assertEqual(r.returncode, 1)
            self.assertIn("not a socket", r.stderr)
        r = self.run_tool(SINK, "--register", "a=1:/nonexistent/ctl.sock")
        self.assertEqual(r.returncode, 1)
        self.assertIn("register group 1", r.stderr)


class MergeTest(unittest.TestCase):
    """The harness's merge of several generators (bench/harness/merge.py),
    checked against real generator output."""

    def test_share_divides_totals(self):
        args = [
            "--target",
            "x",
            "--concurrency",
            "7",
            "--rate",
            "1000",
            "--threads",
            "2",
            "--duration",
            "3",
        ]
        parts = [merge.share(args, 3, i) for i in range(3)]
        self.assertEqual([p[3] for p in parts], ["3", "2", "2"])
        self.assertEqual([p[5] for p in parts], ["334", "333", "333"])
        self.assertEqual([p[7] for p in parts], ["1", "1", "1"])  # at least one thread each
        self.assertEqual({p[9] for p in parts}, {"3"})  # durations are not totals
        self.assertEqual(args[3], "7")  # the caller's list is left alone

    def test_merge_matches_each_generator(self):
        port = free_port()
        sink = Sink("--listen", f"a=127.0.0.1:{port}")
        try:
            one = generate(
                "--target", f"127.0.0.1:{port}=a", "--connections", "400", "--concurrency", "4"
            )
            two = generate(
                "--target", f"127.0.0.1:{port}=a", "--connections", "900", "--concurrency", "16"
            )
        finally:
            sink.stop()
        for g in (one, two):
            # The Python quantile rule reproduces the generator's own figures.
            count = sum(n for _, n in g["buckets"])
            self.assertEqual(count, g["finished"])
            for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999)):
                ours = (
                    figures.histogram_quantile(
                        g["buckets"], count, g["latency_us"]["max"] * 1000, q
                    )
                    / 1000
                )
                self.assertAlmostEqual(ours, g["latency_us"][name], delta=0.1)
        m = merge.merge([one, two])
        self.assertEqual((m["started"], m["completed"], m["generators"]), (1300, 1300, 2))
        self.assertEqual(m["targets"][0]["ok"], 1300)
        self.assertEqual(sum(n for _, n in m["buckets"]), 1300)
        self.assertEqual(
            m["latency_us"]["max"], max(one["latency_us"]["max"], two["latency_us"]["max"])
        )
        # Every merged percentile lies between the two generators' own.
        for name in ("p50", "p90", "p99"):
            lo, hi = sorted((one["latency_us"][name], two["latency_us"][name]))
            self.assertTrue(
                lo - 0.1 <= m["latency_us"][name] <= hi + 0.1, (name, lo, m["latency_us"][name], hi)
            )
        # A generator merged with itself keeps its percentiles, doubles its counts.
        d = merge.merge([one, one])
        self.assertEqual(d["finished"], 800)
        for name in ("p50", "p99", "p999"):
            self.assertAlmostEqual(d["latency_us"][name], one["latency_us"][name], delta=0.1)
        self.assertAlmostEqual(d["cdf"][-1][1], 1.0)


if __name__ == "__main__":
    missing = [p for p in (SINK, GEN) if not os.access(p, os.X_OK)]
    sbxtest.run_tap(
        DirectTest,
        ChannelTest,
        BadInputTest,
        MergeTest,
        skip_reason=f"not built: {missing}" if missing else None,
    )
