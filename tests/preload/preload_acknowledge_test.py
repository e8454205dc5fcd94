"""What SKBOX_ACKNOWLEDGE=1 saves when a server under the preload is killed
with connections queued in its socket (docs/preload.md, "Acknowledgements:
what they protect"), with the old command lines: the real daemon
`socketbox -l ADDRESS -p 80 -F -S PATH` (kernel dispatch off) and the server
under `run-with-socketbox`, binding [fe8f::2:0:1]:80.

Each case: the server takes FIRST connections (0 or 1) and then stops
accepting; 8 clients connect, and the daemon sends all 8 to its datagram
socket (its counters), where they wait; the server is killed (SIGKILL), and
after DELAY seconds the same command is started again; each client then
reads what it gets: the new server's greeting (saved) or the end of the
connection (lost).

- The server had read one message (so its hello reached the daemon), same
  network namespace, restarted at once or 1 s later (--dispatch-timeout
  2000, the default): 8 of 8 saved, sent again by the daemon; also 20 of
  20, 1 s later, when 10 wait in the socket and 10 in the daemon.
- It had read none (a hello answers a message): 0 of 8.
- Restarted 3 s later, after the deadline: 0 of 8.
- The server in another network namespace than the daemon (its hello
  cannot reach the daemon's abstract address, and without kernel dispatch
  there is no channel to carry it): 0 of 8.
- Without SKBOX_ACKNOWLEDGE: 0 of 8 (the baseline).

With kernel dispatch on (the daemon from a configuration file,
--kernel-dispatch on) the server takes its listener, and the 8 wait in the
listener's queue, which the daemon holds too: 8 of 8 saved without
SKBOX_ACKNOWLEDGE, from another network namespace, and also when restarted
3 s later (the daemon reclaims the listener at 2 s and sends its queue to
the path, where each connection waits up to 2 s more for a receiver)."""
import os
import signal
import subprocess
import sys
import time
import unittest

import preload_common as pc
from preload_common import sbxtest

sys.path.insert(0, os.path.join(sbxtest.ROOT, "tests", "engine"))
from engine_fixture import Engine  # noqa: E402
from listener_channel import kernel_lacks_bpf  # noqa: E402

WRAPPER = os.path.join(pc.BUILD, "preload", "run-with-socketbox")
QUEUED = 8  # below net.unix.max_dgram_qlen: all wait in the server's socket
DATAGRAM_QUEUE = 10  # net.unix.max_dgram_qlen in a new network namespace

# argv: address, name, first. Serves `first` connections (all, if -1),
# greeting each with its name, then stops accepting until killed.
SERVER = r"""
import signal, socket, sys
address, name, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_server((address, 80), family=socket.AF_INET6)
print("bound", flush=True)
served = 0
while first < 0 or served < first:
    conn, _ = s.accept()
    conn.sendall(name.encode() + b"\n")
    conn.close()
    served += 1
print("holding", flush=True)
signal.pause()
"""


class AcknowledgeTest(unittest.TestCase):
    def setUp(self):
        reason = sbxtest.require_root_and_netns()
        if reason:
            self.skipTest(reason)

    def crash_and_restart(
        self,
        first=1,
        delay=0.0,
        other_namespace=False,
        acknowledge=True,
        kernel_dispatch=False,
        queued=QUEUED,
    ):
        """Returns (saved, lost, the daemon's counters) for the case the
        arguments describe (see the module's docstring)."""
        if kernel_dispatch and kernel_lacks_bpf():
            self.skipTest(kernel_lacks_bpf())
        with sbxtest.Topology() as topo:
            env = pc.preload_env(topo, SKBOX_LISTENER_SOCKET=topo.path("no-engine-here.sock"))
            del env["LD_PRELOAD"]  # run-with-socketbox sets it
            if acknowledge:
                env["SKBOX_ACKNOWLEDGE"] = "1"
            path = pc.directory2_path(env["SKBOX_DIRECTORY_ROOT2"], 0, 1, 80)
            # The client namespace stands for a container of the server's
            # own: it shares only the filesystem with the daemon.
            server_ns = topo.client if other_namespace else topo.server

            def start(name, first):
                p = sbxtest.spawn(
                    [WRAPPER, pc.PYTHON, "-c", SERVER, pc.FE8F_DIR2, name, str(first)],
                    ns=server_ns,
                    env=env,
                    stdout=subprocess.PIPE,
                )
                self.assertEqual(
                    p.stdout.readline(), b"bound\n", p.stderr.read() if p.poll() else ""
                )
                return p

            if kernel_dispatch:
                engine = pc.start_engine(topo, path, kernel_dispatch=True)
                env["SKBOX_LISTENER_SOCKET"] = engine.listener_socket
                old = start("first", first)
                self.assertEqual(pc.kernel_stats(engine)["listeners.granted"], 1)
            else:
                old = start("first", first)
                engine = Engine(["-l", pc.PUBLIC6, "-p", "80", "-F", "-S", path], ns=topo.server)
            new = None
            clients = []
            try:
                for _ in range(first):
                    with sbxtest.connect_from(topo.client, pc.PUBLIC6, 80) as c:
                        c.settimeout(10)
                        self.assertEqual(c.recv(64), b"first\n")
                self.assertEqual(old.stdout.readline(), b"holding\n")
                for _ in range(queued):
                    c = sbxtest.socket_in(topo.client)
                    c.settimeout(10)
                    c.connect((pc.PUBLIC6, 80))
                    clients.append(c)
                if kernel_dispatch:  # all in the listener's queue
                    sbxtest.wait_for(
                        lambda: pc.kernel_stats(engine)["steered"] == first + queued,
                        timeout=10,
                        what=f"{first + queued} connections steered",
                    )
                else:  # sent, one per message, as many as the socket holds
                    in_socket = min(queued, DATAGRAM_QUEUE)

                    def sent():
                        st = engine.stats(settle=False)
                        return (
                            st.get("accepted") == first + queued
                            and st.get("messages", 0) >= first + in_socket
                        )

                    sbxtest.wait_for(
                        sent, timeout=10, what=f"{first + in_socket} connections sent to {path}"
                    )
                old.kill()
                old.wait()
                if delay:
                    time.sleep(delay)  # the restart's delay is the case, not a wait
                new = start("second", -1)
                saved = lost = 0
                for c in clients:
                    try:
                        got = c.recv(64)
                    except ConnectionResetError:
                        got = b""
                    if got == b"second\n":
                        saved += 1
                    else:
                        self.assertEqual(got, b"", "neither the new server nor the end")
                        lost += 1
                stats = engine.stats()
                if kernel_dispatch:
                    stats.update(pc.kernel_stats(engine))
                return saved, lost, stats
            finally:
                for c in clients:
                    c.close()
                for p in (old, new):
                    if p is not None:
                        sbxtest.stop(p, signal.SIGKILL)
                engine.stop()

    def report(self, saved, lost, st, queued=QUEUED):
        kernel = (
            f" steered={st['steered']} reclaimed={st['reclaimed']} "
            f"reclaim_failed={st['reclaim_failed']}"
            if "steered" in st
            else ""
        )
        why = "".join(f" {k}={v}" for k, v in st.items() if k.startswith("dropped.") and v)
        print(
            f"# {self.id().split('.')[-1]}: {saved} of {queued} saved, {lost} lost; "
            f"redelivered={st.get('redelivered')} dropped={st.get('dropped')}{why} "
            f"dispatched={st.get('dispatched')}{kernel}",
            flush=True,
        )

    def test_greeted_and_restarted_at_once_loses_none(self):
        saved, lost, st = self.crash_and_restart()
        self.report(saved, lost, st)
        self.assertEqual((saved, lost), (QUEUED, 0), st)
        self.assertEqual(st["redelivered"], QUEUED, st)

    def test_restarted_within_the_dispatch_timeout_loses_none(self):
        saved, lost, st = self.crash_and_restart(delay=1.0)
        self.report(saved, lost, st)
        self.assertEqual((saved, lost), (QUEUED, 0), st)

    def test_more_than_the_socket_holds_restarted_within_the_timeout(self):
        # 10 wait in the socket, 10 in the daemon, which waits for room.
        saved, lost, st = self.crash_and_restart(delay=1.0, queued=20)
        self.report(saved, lost, st, queued=20)
        self.assertEqual((saved, lost), (20, 0), st)

    def test_restarted_after_the_dispatch_timeout_loses_them(self):
        saved, lost, st = self.crash_and_restart(delay=3.0)
        self.report(saved, lost, st)
        self.assertEqual((saved, lost), (0, QUEUED), st)

    def test_server_that_read_nothing_has_not_greeted(self):
        saved, lost, st = self.crash_and_restart(first=0)
        self.report(saved, lost, st)
        self.assertEqual((saved, lost), (0, QUEUED), st)
        self.assertEqual(st["redelivered"], 0, st)

    def test_server_in_another_network_namespace_cannot_greet(self):
        saved, lost, st = self.crash_and_restart(other_namespace=True)
        self.report(saved, lost, st)
        self.assertEqual((saved, lost), (0, QUEUED), st)
        self.assertEqual(st["redelivered"], 0, st)

    def test_without_acknowledgements_the_queue_is_lost(self):
        saved, lost, st = self.crash_and_restart(acknowledge=False)
        self.report(saved, lost, st)
        self.assertEqual((saved, lost), (0, QUEUED), st)

    # Kernel dispatch on: the server took its listener, which the daemon
    # holds too, so its queue outlives the server, in any namespace.
    def test_listener_taker_in_another_namespace_restarted_at_once(self):
        saved, lost, st = self.crash_and_restart(
            other_namespace=True, acknowledge=False, kernel_dispatch=True
        )
        self.report(saved, lost, st)
        self.assertEqual((saved, lost), (QUEUED, 0), st)

    def test_listener_taker_in_another_namespace_restarted_later(self):
        # At 2 s the daemon takes the listener back, accepts its queue and
        # sends it to the path, where each connection waits for a receiver.
        # The restarted server binds the path, then asks for its listener:
        # the connection waiting when it binds goes by the path, and those
        # the reclaim has not sent by the time the listener is granted again
        # stay in its queue for the server to accept. How many each way is
        # a race (1 of 8 by the path here, all 8 in one CI run); none lost.
        saved, lost, st = self.crash_and_restart(
            delay=3.0, other_namespace=True, acknowledge=False, kernel_dispatch=True
        )
        self.report(saved, lost, st)
        self.assertEqual((saved, lost), (QUEUED, 0), st)
        self.assertGreaterEqual(st["reclaimed"], 1, st)
        self.assertLessEqual(st["reclaimed"], QUEUED, st)
        self.assertEqual(st["reclaim_failed"], 0, st)


class RelayedAnswersTest(unittest.TestCase):
    """With kernel dispatch on, QUEUED clients connect before any server
    runs: the engine accepts them (no listener is taken yet) and holds them
    while the backend's path does not exist. The server, under the preload
    in the client namespace, then binds: the library takes the listener,
    and the engine sends the held connections over the datagram socket that
    stays beside it. The library's hello and acks to the engine's abstract
    name are refused there (another network namespace); with
    SKBOX_ACKNOWLEDGE=1 it sends them over the listener's channel instead
    (docs/kernel-dispatch.md, "Hellos and acks across network namespaces")."""

    def setUp(self):
        reason = sbxtest.require_root_and_netns() or kernel_lacks_bpf()
        if reason:
            self.skipTest(reason)

    def serve_the_held_connections(self, acknowledge):
        """(the engine's counters, its kernel counters) once the server has
        greeted every client."""
        with sbxtest.Topology() as topo:
            env = pc.preload_env(topo)
            del env["LD_PRELOAD"]  # run-with-socketbox sets it
            if acknowledge:
                env["SKBOX_ACKNOWLEDGE"] = "1"
            path = pc.directory2_path(env["SKBOX_DIRECTORY_ROOT2"], 0, 1, 80)
            # Long enough for the server's start-up under a loaded test run.
            engine = pc.start_engine(
                topo, path, kernel_dispatch=True, extra_args=["--dispatch-timeout", "10000"]
            )
            env["SKBOX_LISTENER_SOCKET"] = engine.listener_socket
            clients, server = [], None
            try:
                for _ in range(QUEUED):
                    c = sbxtest.socket_in(topo.client)
                    c.settimeout(15)
                    c.connect((pc.PUBLIC6, 80))
                    clients.append(c)
                sbxtest.wait_for(
                    lambda: engine.stats(settle=False).get("accepted") == QUEUED,
                    timeout=10,
                    what=f"{QUEUED} connections accepted by the engine",
                )
                server = sbxtest.spawn(
                    [WRAPPER, pc.PYTHON, "-c", SERVER, pc.FE8F_DIR2, "late", str(QUEUED)],
                    ns=topo.client,
                    env=env,
                    stdout=subprocess.PIPE,
                )
                self.assertEqual(server.stdout.readline(), b"bound\n")
                self.assertEqual([c.recv(64) for c in clients], [b"late\n"] * QUEUED)
                self.assertEqual(server.stdout.readline(), b"holding\n")
                if acknowledge:  # the hello, then an ack per connection
                    sbxtest.wait_for(
                        lambda: pc.kernel_stats(engine)["replies.relayed"] == 1 + QUEUED,
                        timeout=10,
                        what=f"the hello and {QUEUED} acks relayed",
                    )
                else:
                    # Answers would have been sent before the greetings; the
                    # registry reads a channel within moments. A second of
                    # watching gives a regression time to show.
                    deadline = time.monotonic() + 1.0
                    while time.monotonic() < deadline:
                        self.assertEqual(pc.kernel_stats(engine)["replies.relayed"], 0)
                return engine.stats(), pc.kernel_stats(engine)
            finally:
                for c in clients:
                    c.close()
                if server is not None:
                    sbxtest.stop(server, signal.SIGKILL)
                engine.stop()

    def report(self, st, ks):
        print(
            f"# {self.id().split('.')[-1]}: accepted={st.get('accepted')} "
            f"dispatched={st.get('dispatched')} unconfirmed={st.get('unconfirmed', 0)} "
            f"granted={ks['listeners.granted']} relayed={ks['replies.relayed']} "
            f"unknown_sender={ks['replies.unknown_sender']}",
            flush=True,
        )

    def test_acknowledging_server_answers_over_the_channel(self):
        st, ks = self.serve_the_held_connections(acknowledge=True)
        self.report(st, ks)
        self.assertEqual(ks["listeners.granted"], 1, ks)
        self.assertEqual(ks["replies.relayed"], 1 + QUEUED, ks)
        self.assertEqual(ks["replies.unknown_sender"], 0, ks)
        # Every connection dispatched, none left unconfirmed.
        self.assertEqual((st["accepted"], st["dispatched"]), (QUEUED, QUEUED), st)
        self.assertEqual(st.get("unconfirmed", 0), 0, st)

    def test_without_the_variable_nothing_is_relayed(self):
        st, ks = self.serve_the_held_connections(acknowledge=False)
        self.report(st, ks)
        self.assertEqual(ks["listeners.granted"], 1, ks)
        self.assertEqual(ks["replies.relayed"], 0, ks)
        self.assertEqual((st["accepted"], st["dispatched"]), (QUEUED, QUEUED), st)


if __name__ == "__main__":
    sbxtest.run_tap(AcknowledgeTest, RelayedAnswersTest, skip_reason=pc.skip_reason(pc.ENGINE))
