"""Upgrades without loss (--handover, --upgrade): a successor takes the
running daemon's listening sockets while clients keep connecting, and every
connection is delivered (or counted by the engine); a successor that gives
up, or dies at any step, leaves (or puts) the old daemon serving; jump-fd
targets, the metrics endpoint and a stalled holder of the offer are each
handled as the successor's options and the operator expect."""
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import unittest

from engine_fixture import SOCKETBOX, Backend, Engine, engine_args, sbxtest, write
from listener_channel import kernel_lacks_bpf
from load_fixture import Load, fetch_once, peer_pid, wait_gone
from metrics_test import scrape

A = "2001:db8:1::"
PORT = 8095


class FakeSuccessor:
    """A peer of the handover socket that plays a successor's part by hand."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(path)
        self.fds = []

    def receive(self):
        msg, ancdata, _flags, _addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(4 * 300))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                self.fds.extend(
                    int.from_bytes(data[i : i + 4], "little") for i in range(0, len(data), 4)
                )
        return msg

    def take_offer(self):
        """Sends the request; returns the offer (its listeners follow)."""
        self.sock.send(b"REQUEST")
        offer = self.receive()
        listeners = int(offer.split(b"\0")[0].split()[1])
        got = 0
        while got < listeners:
            got += int(self.receive().split()[1])
        return offer

    def close(self):
        self.sock.close()  # a second close is harmless
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def metrics_answer(ns, port, host="::1"):
    """'served', 'refused', or what else a GET /metrics at [host]:port got."""
    s = sbxtest.socket_in(ns)
    s.settimeout(5)
    try:
        s.connect((host, port))
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return "served" if data.startswith(b"HTTP/1.0 200") else data[:40].decode(errors="replace")
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return repr(e)
    finally:
        s.close()


def count_lines(engine, text):
    with engine.lock:
        return sum(text in line for line in engine.lines)


# A root peer that takes the offer and then does nothing (item 7 of issue 18).
STALLER = """
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.send(b"REQUEST")
s.recvmsg(65536, socket.CMSG_SPACE(4 * 300))
print("taken", flush=True)
time.sleep(120)
"""


class HandoverTest(unittest.TestCase):
    def test_upgrade_under_load_loses_nothing(self):
        # Five generations in a row under load from 4 client threads; the
        # daemons' own counters must add up to what the clients received.
        with sbxtest.Topology() as topo:
            backend = Backend(topo.path("b.sock"), "served")
            handover = topo.path("handover.sock")
            # A short grace: each old daemon leaves 1 s after its successor started.
            args = [
                "-S",
                backend.path,
                "-p",
                str(PORT),
                "--threads",
                "2",
                "--handover",
                handover,
                "--handover-grace",
                "1",
                "--metrics-listen",
                "[::1]:9100",
            ]
            daemons = [Engine(args, ns=topo.server)]
            self.assertEqual(stat.S_IMODE(os.stat(handover).st_mode), 0o600)
            load = Load(topo.client, f"{A}5", PORT)
            try:
                for _ in range(4):
                    before = load.total()
                    sbxtest.wait_for(lambda: load.total() >= before + 200, timeout=20, what="load")
                    daemons.append(Engine(args, ns=topo.server))
                    # The old daemon stops on its own once the new one serves.
                    self.assertEqual(daemons[-2].proc.wait(timeout=20), 0, daemons[-2].output())
                before = load.total()
                sbxtest.wait_for(
                    lambda: load.total() >= before + 200, timeout=20, what="load after"
                )
            finally:
                load.stop()
            last_stats = daemons[-1].stats()
            # Nothing of the predecessors' stays open in the last daemon: one pipe (its own
            # stderr), and sockets: 2 listeners, metrics, handover, at most 2 to the backend.
            fd_dir = f"/proc/{daemons[-1].proc.pid}/fd"
            links = [os.readlink(os.path.join(fd_dir, f)) for f in os.listdir(fd_dir)]
            self.assertEqual(sum(link.startswith("pipe:") for link in links), 1, links)
            self.assertLessEqual(sum(link.startswith("socket:") for link in links), 6, links)
            # The metrics listener came along.
            accepted = [
                v
                for (name, _), v in scrape(topo.server).items()
                if name == "socketbox_accepted_total"
            ]
            self.assertGreater(sum(accepted), 0)
            self.assertEqual(daemons[-1].stop(), 0)
            backend.close()
            stats = []
            for old in daemons[:-1]:
                old.reader.join(timeout=5)
                stats.append(old.final_stats())
                self.assertTrue(old.has_line("takes over: no longer accepting"), old.output())
            stats.append(last_stats)
            logs = "\n".join(d.output() for d in daemons)
            self.assertEqual(load.failures, [], logs)
            for st in stats:
                self.assertGreater(st.get("dispatched", 0), 0, logs)
                self.assertEqual(st.get("dropped", 0), 0, logs)
            self.assertEqual(sum(st["dispatched"] for st in stats), load.greetings["served"], logs)
            for new in daemons[1:]:
                self.assertTrue(new.has_line("took over from pid"), new.output())

    def test_successor_that_gives_up_leaves_the_old_one_serving(self):
        with sbxtest.Topology() as topo:
            backend = Backend(topo.path("b.sock"), "still")
            handover = topo.path("handover.sock")
            old = Engine(
                ["-S", backend.path, "-p", str(PORT), "--threads", "1", "--handover", handover],
                ns=topo.server,
            )
            try:
                # A successor that takes the listeners, then vanishes.
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                s.connect(handover)
                s.send(b"REQUEST")
                fds = []

                def receive():
                    msg, ancdata, _flags, _addr = s.recvmsg(65536, socket.CMSG_SPACE(4 * 300))
                    for level, kind, data in ancdata:
                        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                            fds.extend(
                                int.from_bytes(data[i : i + 4], "little")
                                for i in range(0, len(data), 4)
                            )
                    return msg

                offer = receive()
                self.assertTrue(offer.startswith(b"OFFER 1 0\0"), offer)  # one listener, no metrics
                self.assertTrue(receive().startswith(b"FDS 1"))
                self.assertEqual(len(fds), 2)  # the daemon's stderr and its listener
                s.close()
                for fd in fds:
                    os.close(fd)
                sbxtest.wait_for(
                    lambda: old.has_line("did not take over"), timeout=10, what="give-up line"
                )
                load = Load(topo.client, f"{A}6", PORT, threads=2)
                sbxtest.wait_for(lambda: load.total() >= 50, timeout=20, what="load")
                load.stop()
                self.assertEqual(load.failures, [])
                self.assertIsNone(old.proc.poll())
                # Garbage instead of a request: refused, still serving.
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                s.connect(handover)
                s.send(b"GIVE ME EVERYTHING")
                self.assertEqual(s.recv(100), b"")
                s.close()
                sbxtest.wait_for(
                    lambda: old.has_line("no valid request"), timeout=10, what="refusal"
                )
                self.assertEqual(fetch_once(topo.client, f"{A}6", PORT), "still")
            finally:
                self.assertEqual(old.stop(), 0)
                backend.close()
            self.assertFalse(os.path.exists(handover), "the handover socket is removed at exit")

    def test_upgrade_command_reuses_the_command_line_and_directory(self):
        with sbxtest.Topology() as topo:
            backend = Backend(topo.path("b.sock"), "upgraded")
            with open(topo.path("socketbox.conf"), "w") as f:
                f.write(f"max-rules:1\nrule-set:0 size:1\nport:{PORT} jump-unix:{backend.path}\n")
            handover = topo.path("handover.sock")
            # A relative configuration path: the successor must run where
            # the old daemon started.
            old = Engine(
                ["-f", "socketbox.conf", "-p", str(PORT), "--handover", handover],
                ns=topo.server,
                wrapper=["sh", "-c", f'cd {topo.tmp} && exec "$@"', "sh"],
            )
            load = Load(topo.client, f"{A}7", PORT, threads=2)
            new_pid = None
            try:
                sbxtest.wait_for(lambda: load.total() >= 100, timeout=20, what="load before")
                r = sbxtest.sh(
                    "ip",
                    "netns",
                    "exec",
                    topo.server,
                    SOCKETBOX,
                    "--upgrade",
                    handover,
                    check=False,
                    timeout=30,
                )
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("upgrading pid", r.stderr)
                self.assertEqual(old.proc.wait(timeout=20), 0)
                new_pid = peer_pid(handover)
                self.assertNotEqual(new_pid, old.proc.pid)
                before = load.total()
                sbxtest.wait_for(
                    lambda: load.total() >= before + 100, timeout=20, what="load after"
                )
            finally:
                load.stop()
                if new_pid:
                    os.kill(new_pid, signal.SIGTERM)
                    wait_gone(new_pid)
                backend.close()
            self.assertEqual(load.failures, [])
            # The successor logs to the old daemon's standard error.
            self.assertTrue(old.has_line("took over from pid"), old.output())

    def test_a_successor_that_dies_at_any_step_leaves_the_old_one_serving(self):
        # Issue 18, item 4: a successor killed after READY left nobody
        # listening (888 of 1,200 clients refused or reset). Now the old
        # daemon keeps the listeners for --handover-grace and takes them
        # back. Four client threads connect throughout; each step is
        # counted apart. A client has at most one connection in flight, so
        # a successor killed while serving can lose at most 4 (those it had
        # accepted and not yet handed on); none may be refused.
        with sbxtest.Topology() as topo:
            backend = Backend(topo.path("b.sock"), "served")
            handover = topo.path("handover.sock")
            args = [
                "-S",
                backend.path,
                "-p",
                str(PORT),
                "--threads",
                "1",
                "--handover",
                handover,
                "--handover-grace",
                "4",
            ]
            old = Engine(args, ns=topo.server)
            load = Load(topo.client, f"{A}8", PORT)
            figures = {}
            successors = []

            def step(name, action):
                total, failed = load.total(), len(load.failures)
                action()
                now = load.total()
                sbxtest.wait_for(
                    lambda: load.total() >= now + 100, timeout=20, what=f"load after {name}"
                )
                self.assertIsNone(old.proc.poll(), old.output())
                done = load.total()
                with load.lock:
                    figures[name] = (done - total, load.failures[failed:])

            def taken_back(count):
                sbxtest.wait_for(
                    lambda: count_lines(old, "taking the listeners back") >= count,
                    timeout=10,
                    what="take-back",
                )

            def before_the_offer():
                fake = FakeSuccessor(handover)
                fake.close()  # connects, sends nothing, is gone
                sbxtest.wait_for(lambda: old.has_line("no valid request"), what="refusal")

            def offer_taken_no_ready():
                fake = FakeSuccessor(handover)
                fake.take_offer()
                fake.close()
                sbxtest.wait_for(lambda: old.has_line("did not take over"), what="give-up line")

            def right_after_ready():
                new = Engine(args, ns=topo.server, wait_ready=False)
                successors.append(new)
                sbxtest.wait_for(
                    lambda: count_lines(old, "takes over: no longer accepting") >= 1, what="READY"
                )
                new.proc.kill()
                taken_back(1)

            def while_serving():
                new = Engine(args, ns=topo.server)  # waits for its "ready:" line
                successors.append(new)
                now = load.total()
                sbxtest.wait_for(
                    lambda: load.total() >= now + 200, timeout=20, what="load on the successor"
                )
                new.proc.kill()
                taken_back(2)

            try:
                sbxtest.wait_for(lambda: load.total() >= 100, timeout=20, what="load before")
                step("killed before taking the offer", before_the_offer)
                step("killed after taking the offer, before READY", offer_taken_no_ready)
                step("killed right after READY", right_after_ready)
                step("killed while serving, 200 connections in", while_serving)
                # Taken back for good: a later successor takes over as usual,
                # and the old daemon leaves once that one has served for the grace.
                last = Engine(args, ns=topo.server)
                successors.append(last)
                started = time.monotonic()
                self.assertEqual(old.proc.wait(timeout=20), 0, old.output())
                waited = time.monotonic() - started
                now = load.total()
                sbxtest.wait_for(lambda: load.total() >= now + 100, timeout=20, what="load after")
            finally:
                load.stop()
                for new in successors:
                    new.stop()
                backend.close()
            logs = "\n".join(e.output() for e in [old] + successors)
            for name, (connections, failures) in figures.items():
                print(
                    f"# {name}: {connections} connections, {len(failures)} failed {failures}",
                    file=sys.stderr,
                )
            print(
                f"# the old daemon left {waited:.1f} s after the last successor started "
                f"(--handover-grace 4)",
                file=sys.stderr,
            )
            self.assertEqual(figures["killed before taking the offer"][1], [], logs)
            self.assertEqual(figures["killed after taking the offer, before READY"][1], [], logs)
            self.assertLessEqual(len(figures["killed right after READY"][1]), 4, logs)
            self.assertLessEqual(
                len(figures["killed while serving, 200 connections in"][1]), 4, logs
            )
            self.assertFalse([f for f in load.failures if "Refused" in f], load.failures)
            self.assertEqual(len(load.failures), sum(len(f) for _, f in figures.values()), logs)
            self.assertGreaterEqual(waited, 3.5, logs)
            self.assertTrue(old.has_line("serving again"), logs)

    def test_a_successor_of_an_earlier_version_is_not_taken_for_dead(self):
        # An earlier version closes its channel after STOPPED and serves on:
        # the old daemon then watches its process, and leaves after the grace.
        with sbxtest.Topology() as topo:
            backend = Backend(topo.path("b.sock"), "b")
            handover = topo.path("handover.sock")
            old = Engine(
                [
                    "-S",
                    backend.path,
                    "-p",
                    str(PORT),
                    "--threads",
                    "1",
                    "--handover",
                    handover,
                    "--handover-grace",
                    "1",
                ],
                ns=topo.server,
            )
            fake = FakeSuccessor(handover)
            try:
                fake.take_offer()
                fake.sock.send(f"READY {os.getpid()}".encode())
                self.assertEqual(fake.receive(), b"STOPPED")
                fake.sock.close()  # and this process runs on
                self.assertEqual(old.proc.wait(timeout=10), 0, old.output())
            finally:
                fake.close()
                backend.close()
            self.assertTrue(old.has_line("closed its channel and runs on"), old.output())
            self.assertFalse(old.has_line("taking the listeners back"), old.output())

    @unittest.skipIf(kernel_lacks_bpf(), "kernel dispatch unavailable here")
    def test_a_successor_that_dies_under_kernel_dispatch_hands_steering_back(self):
        # The old daemon's program is disabled while the successor's steers;
        # taken back, it steers again into the same receiver's listener.
        from kernel_dispatch_test import ListenerBackend

        with sbxtest.Topology() as topo:
            web = ListenerBackend(topo.path("web.sock"), "web")
            conf = write(
                topo.path("socketbox.conf"),
                f"max-rules:1\nrule-set:0 size:1\nport:{PORT} jump-unix:{web.path}\n",
            )
            engine_socket = topo.path("listeners.sock")
            handover = topo.path("handover.sock")
            args = engine_args(
                conf,
                "--handover",
                handover,
                "--handover-grace",
                "5",
                port=PORT,
                listener_socket=engine_socket,
            )
            old = Engine(args, ns=topo.server)
            web.take(engine_socket)
            self.assertEqual(web.status, 0)
            load = Load(topo.client, f"{A}8", PORT)
            try:
                sbxtest.wait_for(
                    lambda: len(web.via_listener) >= 100, timeout=20, what="steered load"
                )
                new = Engine(args, ns=topo.server)
                before = load.total()
                sbxtest.wait_for(
                    lambda: load.total() >= before + 100, timeout=20, what="load on the successor"
                )
                new.proc.kill()
                sbxtest.wait_for(lambda: old.has_line("serving again"), what="take-back")
                before = len(web.via_listener)
                sbxtest.wait_for(
                    lambda: len(web.via_listener) >= before + 100,
                    timeout=20,
                    what="steering by the old daemon again",
                )
            finally:
                load.stop()
            self.assertLessEqual(len(load.failures), 4, old.output())
            self.assertFalse([f for f in load.failures if "Refused" in f], load.failures)
            self.assertEqual(set(load.greetings), {"web"})
            self.assertEqual(old.stop(), 0)
            web.close()

    def test_upgrade_passes_jump_fd_targets_on(self):
        # Issue 18, item 5: with jump-fd:3, the successor started by --upgrade
        # took its own handover channel for fd 3 and dropped every such
        # connection. Now fd 3 is the old daemon's, passed on in the handover.
        with sbxtest.Topology() as topo:
            backend = Backend(topo.path("j.sock"), "jumped")
            conf = topo.path("socketbox.conf")
            with open(conf, "w") as f:
                f.write(f"max-rules:1\nrule-set:0 size:1\nport:{PORT} jump-fd:3\n")
            jump = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            jump.connect(backend.path)
            n = jump.fileno()
            put_at_3 = f'exec 3<&{n} {n}<&-; exec "$@"' if n != 3 else 'exec "$@"'
            handover = topo.path("handover.sock")
            old = Engine(
                engine_args(conf, "--handover", handover, port=PORT, kernel_dispatch="off"),
                ns=topo.server,
                pass_fds=(n,),
                wrapper=["sh", "-c", put_at_3, "sh"],
            )
            jump.close()
            new_pid = None
            try:
                self.assertEqual(fetch_once(topo.client, f"{A}9", PORT), "jumped")
                # A configuration naming an fd the old daemon does not have:
                # the successor refuses to start, the old one goes on.
                with open(conf, "w") as f:
                    f.write(f"max-rules:1\nrule-set:0 size:1\nport:{PORT} jump-fd:7\n")
                r = sbxtest.sh(SOCKETBOX, "--upgrade", handover, check=False, timeout=30)
                self.assertEqual(r.returncode, 1, r.stderr)
                sbxtest.wait_for(lambda: old.has_line("near 'jump-fd:7'"), what="refusal")
                self.assertIsNone(old.proc.poll())
                self.assertEqual(fetch_once(topo.client, f"{A}9", PORT), "jumped")
                with open(conf, "w") as f:
                    f.write(f"max-rules:1\nrule-set:0 size:1\nport:{PORT} jump-fd:3\n")
                load = Load(topo.client, f"{A}9", PORT, threads=2)
                try:
                    r = sbxtest.sh(SOCKETBOX, "--upgrade", handover, check=False, timeout=30)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    sbxtest.wait_for(lambda: old.has_line("took over from pid"), what="took over")
                    new_pid = peer_pid(handover)
                    self.assertNotEqual(new_pid, old.proc.pid)
                    # The same socket at the same number.
                    self.assertEqual(
                        os.readlink(f"/proc/{new_pid}/fd/3"),
                        os.readlink(f"/proc/{old.proc.pid}/fd/3"),
                    )
                    before = load.total()
                    sbxtest.wait_for(
                        lambda: load.total() >= before + 100, timeout=20, what="load after"
                    )
                finally:
                    load.stop()
                self.assertEqual(load.failures, [], old.output())
                self.assertEqual(fetch_once(topo.client, f"{A}9", PORT), "jumped")
            finally:
                if new_pid:
                    os.kill(new_pid, signal.SIGTERM)
                    wait_gone(new_pid)
                old.stop()
                backend.close()

    def test_the_successors_metrics_listen_wins(self):
        # Issue 18, item 6: a successor with another --metrics-listen kept
        # serving the inherited socket and logged an address it never bound.
        with sbxtest.Topology() as topo:
            backend = Backend(topo.path("b.sock"), "m")
            handover = topo.path("handover.sock")
            base = ["-S", backend.path, "-p", str(PORT), "--threads", "1", "--handover", handover]
            daemons = [Engine(base + ["--metrics-listen", "[::]:9100"], ns=topo.server)]
            try:
                self.assertEqual(metrics_answer(topo.server, 9100), "served")

                def upgrade(*metrics):
                    new = Engine(base + list(metrics), ns=topo.server)
                    daemons.append(new)
                    sbxtest.wait_for(lambda: daemons[-2].has_line("takes over"), what="handover")
                    return new

                # Another address and port: bound, and the old endpoint is gone.
                new = upgrade("--metrics-listen", "[::1]:9101")
                self.assertTrue(new.has_line("metrics at http://[::1]:9101/metrics"), new.output())
                self.assertEqual(metrics_answer(topo.server, 9101), "served")
                sbxtest.wait_for(
                    lambda: metrics_answer(topo.server, 9100) == "refused",
                    what="the old endpoint closed",
                )
                # The same address: inherited, and said so.
                new = upgrade("--metrics-listen", "[::1]:9101")
                self.assertTrue(
                    new.has_line("metrics at http://[::1]:9101/metrics (inherited from pid"),
                    new.output(),
                )
                self.assertEqual(metrics_answer(topo.server, 9101), "served")
                # The same port on another address: bound once the predecessor lets go of it.
                new = upgrade("--metrics-listen", "[::]:9101")
                sbxtest.wait_for(
                    lambda: new.has_line("metrics at http://[::]:9101/metrics"), what="bound"
                )
                self.assertEqual(metrics_answer(topo.server, 9101), "served")
                # None: none served.
                new = upgrade()
                self.assertTrue(
                    new.has_line("not serving the predecessor's metrics endpoint [::]:9101"),
                    new.output(),
                )
                self.assertNotIn("metrics at", new.output())
                sbxtest.wait_for(
                    lambda: metrics_answer(topo.server, 9101) == "refused",
                    what="no metrics endpoint",
                )
                self.assertEqual(fetch_once(topo.client, f"{A}5", PORT), "m")
            finally:
                for d in reversed(daemons):
                    d.stop()
                backend.close()

    def test_a_stalled_holder_of_the_offer_is_named(self):
        # Issue 18, item 7: a root peer that took the offer and stalled made
        # a concurrent --upgrade fail after 10 s with "Resource temporarily
        # unavailable". Now the message names the holder.
        with sbxtest.Topology() as topo:
            backend = Backend(topo.path("b.sock"), "patient")
            handover = topo.path("handover.sock")
            old = Engine(
                ["-S", backend.path, "-p", str(PORT), "--threads", "1", "--handover", handover],
                ns=topo.server,
            )
            staller = sbxtest.spawn(
                [sys.executable, "-c", STALLER, handover], stdout=subprocess.PIPE
            )
            try:
                self.assertEqual(staller.stdout.readline(), b"taken\n")
                started = time.monotonic()
                r = sbxtest.sh(SOCKETBOX, "--upgrade", handover, check=False, timeout=30)
                took = time.monotonic() - started
                print(
                    f"# --upgrade beside a stalled holder: exit {r.returncode} after {took:.1f} s: "
                    f"{r.stderr.strip()}",
                    file=sys.stderr,
                )
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(f"pid {staller.pid} ", r.stderr)
                self.assertIn("import socket, sys, time", r.stderr)  # its command line
                self.assertLess(took, 15)
                self.assertEqual(fetch_once(topo.client, f"{A}6", PORT), "patient")
            finally:
                sbxtest.stop(staller, signal.SIGKILL)
                self.assertEqual(old.stop(), 0)
                backend.close()

    def test_upgrade_with_nothing_to_upgrade_says_so(self):
        with sbxtest.Topology() as topo:
            r = sbxtest.sh(SOCKETBOX, "--upgrade", topo.path("nobody.sock"), check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("no daemon serves this path", r.stderr)
            r = sbxtest.sh(SOCKETBOX, "-S", "/x", "--handover", "", check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("--handover", r.stderr)
            r = sbxtest.sh(SOCKETBOX, "-P", "1:/x", "--handover", topo.path("h.sock"), check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("cannot be combined with -P or -e", r.stderr)


if __name__ == "__main__":
    sbxtest.run_tap(HandoverTest, skip_reason=sbxtest.require_root_and_netns())
