#!/usr/bin/env python3
"""bench/sink --take-listener against the real engine with --kernel-dispatch
on (docs/kernel-dispatch.md), in network namespaces: connections for a sink
that took its backend's listener arrive through it (its via_listener
counter), none lost; a sink that does not ask, or is refused, or finds no
engine, still gets its connections over its datagram socket. TAP output;
run by meson (suite 'bench').

Skips only when not root (namespaces, loading BPF) or when the kernel has no
BPF syscall (then no sk_lookup either); anything else that goes wrong fails.
"""
import json
import os
import signal
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "engine"))
import sbxtest  # noqa: E402
from engine_fixture import Engine, engine_args  # noqa: E402
from listener_channel import kernel_lacks_bpf  # noqa: E402

BUILD = os.environ.get("SBX_BUILD", os.path.join(sbxtest.ROOT, "build"))
SINK = os.path.join(BUILD, "bench", "sink")
GEN = os.path.join(BUILD, "bench", "load_generator")
A = "2001:db8:1::"
CONNECTIONS = 2000


def skip_reason():
    return sbxtest.require_root_and_netns() or kernel_lacks_bpf()


class Sink:
    """bench/sink in the server namespace; stdout read for 'ready' and the
    JSON summaries, stderr kept for its one-line notes."""

    def __init__(self, ns, *args):
        self.p = sbxtest.spawn([SINK, *args], ns=ns, stdout=subprocess.PIPE)
        line = self.p.stdout.readline().decode()
        if line.strip() != "ready":
            raise AssertionError(f"sink not ready: {line!r} {self.p.stderr.read().decode()}")

    def stop(self):
        """SIGTERM; (exit code, final summary, stderr)."""
        self.p.send_signal(signal.SIGTERM)
        out = self.p.stdout.read().decode()
        err = self.p.stderr.read().decode()
        self.p.wait(timeout=10)
        sbxtest.stop(self.p)
        summary = [json.loads(l) for l in out.splitlines() if l.startswith("{")][-1]
        return self.p.returncode, summary, err


class KernelDispatchSinkTest(unittest.TestCase):
    def setUp(self):
        self.topo = sbxtest.Topology()
        self.topo.__enter__()
        self.addCleanup(self.topo.close)
        self.engine_socket = self.topo.path("listeners.sock")
        self.paths = {n: self.topo.path(f"{n}.sock") for n in ("a", "b")}
        # [A]10 -> a, [A]11 -> b, on ports 80 and 443.
        lines = ["max-rules:1", "max-maps:1", "rule-set:0 size:4"]
        for host, name in ((f"{A}10", "a"), (f"{A}11", "b")):
            for port in (80, 443):
                lines.append(f"ip:{host} port:{port} jump-unix:{self.paths[name]}")
        lines.append("default fail")
        self.conf = self.topo.path("socketbox.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def engine(self):
        eng = Engine(
            engine_args(
                self.conf, "--listen", "[::]:443", "-b", "4096", listener_socket=self.engine_socket
            ),
            ns=self.topo.server,
        )
        self.addCleanup(lambda: eng.proc.poll() is None and eng.stop())
        self.assertIn("kernel dispatch on", eng.output())
        return eng

    def sink(self, name, *extra):
        return Sink(
            self.topo.server,
            "--backend",
            f"{name}={self.paths[name]}",
            "--threads",
            "2",
            "--lifetime",
            "120",
            *extra,
        )

    def generate(self, *targets, connections=CONNECTIONS):
        args = [GEN, "--connections", str(connections), "--concurrency", "32", "--threads", "2"]
        for host, port, greeting in targets:
            args += ["--target", f"[{host}]:{port}={greeting}"]
        r = self.topo.ns_sh(self.topo.client, *args, check=False, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_taken_listener_carries_the_connections_and_the_others_come_as_before(self):
        eng = self.engine()
        taker = self.sink("a", "--take-listener", "--listener-socket", self.engine_socket)
        classic = self.sink("b")  # never asks: the datagram path
        g = self.generate(
            (f"{A}10", 80, "a"), (f"{A}10", 443, "a"), (f"{A}11", 80, "b"), (f"{A}11", 443, "b")
        )
        self.assertEqual(g["completed"], CONNECTIONS, g["errors"])
        self.assertEqual(sum(g["errors"].values()), 0, g["errors"])
        code_a, a, err_a = taker.stop()
        code_b, b, err_b = classic.stop()
        stats = eng.stats()
        self.assertEqual(eng.stop(), 0)
        self.assertEqual((code_a, code_b), (0, 0), err_a + err_b)
        self.assertIn("listener taken from", err_a)
        self.assertEqual(a["listeners_taken"], 1)
        # Every connection of a through its listener, none the old way.
        self.assertEqual(a["backends"]["a"]["received"], CONNECTIONS // 2)
        self.assertEqual(a["backends"]["a"]["via_listener"], CONNECTIONS // 2)
        self.assertEqual(a["backends"]["a"]["send_errors"], 0)
        self.assertEqual(a["total_via_listener"], CONNECTIONS // 2)
        # b's came over its datagram socket, through the engine.
        self.assertEqual(b["listeners_taken"], 0)
        self.assertEqual(b["backends"]["b"]["received"], CONNECTIONS // 2)
        self.assertEqual(b["backends"]["b"]["via_listener"], 0)
        self.assertEqual(stats["dispatched"], CONNECTIONS // 2)
        self.assertEqual(stats.get("dropped", 0), 0)

    def test_refused_or_no_engine_the_datagram_socket_serves_alone(self):
        # No engine at the listener socket yet: said once, then as before.
        lonely = self.sink("a", "--take-listener", "--listener-socket", self.engine_socket)
        code, summary, err = lonely.stop()
        self.assertEqual(code, 0)
        self.assertIn("backend a: no listener from", err)
        self.assertIn("No such file or directory", err)
        self.assertEqual(err.count("no listener"), 1, err)
        self.assertEqual(summary["listeners_taken"], 0)
        eng = self.engine()
        # A socket the configuration does not send to is refused (EPERM);
        # the sink serves its datagram socket all the same.
        self.paths["x"] = self.topo.path("x.sock")
        stranger = self.sink("x", "--take-listener", "--listener-socket", self.engine_socket)
        # The sink for a asks without a listener socket to ask at: it gives up
        # (ENOENT) and gets its connections from the engine the old way.
        plain = self.sink(
            "a", "--take-listener", "--listener-socket", self.topo.path("nothing-here.sock")
        )
        g = self.generate((f"{A}10", 80, "a"), connections=200)
        self.assertEqual(g["completed"], 200, g["errors"])
        _, x, err_x = stranger.stop()
        _, a, err_a = plain.stop()
        self.assertIn("backend x: no listener from", err_x)
        self.assertIn("Operation not permitted", err_x)
        self.assertEqual(x["listeners_taken"], 0)
        self.assertIn("backend a: no listener from", err_a)
        self.assertEqual(a["backends"]["a"]["received"], 200)
        self.assertEqual(a["backends"]["a"]["via_listener"], 0)
        self.assertEqual(eng.stats()["dispatched"], 200)
        self.assertEqual(eng.stop(), 0)


if __name__ == "__main__":
    sbxtest.run_tap(KernelDispatchSinkTest, skip_reason=skip_reason())
