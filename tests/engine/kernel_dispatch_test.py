"""Kernel dispatch (docs/kernel-dispatch.md): the steering program puts each
connection for a backend whose receiver took its listener straight into
that listener; everything else takes the engine's io_uring path as before.

The engine runs in the topology's server namespace; the receivers run in this
test's own process, so every receiver here is in another network namespace
than the engine (they meet through the filesystem only)."""
import os
import socket
import struct
import subprocess
import threading
import time

from engine_fixture import (
    SOCKETBOX,
    Backend,
    Engine,
    engine_args,
    fetch,
    sbxtest,
    TopologyTest,
    write,
)
from listener_channel import REPLY_CHANNEL_ONLY, kernel_lacks_bpf, relayed_reply, request_listener
from load_fixture import Load

HELLO_8_ACKS = b"SBXR" + bytes([1, 1, 0, 8, 0, 0, 0, 1]) + bytes(4)


def ack(count):
    return b"SBXR" + bytes([2, 1, 0, 0]) + struct.pack(">I", count) + bytes(4)


A = "2001:db8:1::"
A4 = "198.51.100."


def norm(host):
    return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, host))


def kernel_stats(engine):
    """The 'stats kernel' line and the per-backend steered counts."""
    with engine.lock:
        start = len(engine.lines)
    engine.proc.send_signal(__import__("signal").SIGUSR1)
    sbxtest.wait_for(
        lambda: any(l.startswith("stats kernel") for l in engine.lines[start:]),
        timeout=5,
        what="kernel stats",
    )
    out = {}
    with engine.lock:
        lines = engine.lines[start:]
    for line in lines:
        if line.startswith("stats kernel"):
            out.update({k: int(v) for k, v in (w.split("=") for w in line.split()[2:])})
        if line.startswith("stats backend ") and " steered=" in line:
            words = line.split()
            out["steered:" + words[2]] = int(words[3].split("=")[1])
    return out


class Clients:
    """`count` connections to `host`:80 from `ns`, each on its own thread,
    started at once; results() joins them and returns their greetings."""

    def __init__(self, ns, host, count, timeout=10):
        self.greetings = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._one, args=(ns, host, timeout)) for _ in range(count)
        ]
        for t in self.threads:
            t.start()

    def _one(self, ns, host, timeout):
        got = fetch(ns, host, 80, timeout=timeout)
        with self.lock:
            self.greetings.append(got)

    def results(self):
        for t in self.threads:
            t.join()
        return self.greetings


class ListenerBackend(Backend):
    """A receiver that asks for its listener and then serves both: the
    connections the kernel steers into the listener (greeted with its name)
    and those that still come over its datagram socket."""

    def __init__(self, path, name):
        super().__init__(path, name)
        self.via_listener = []
        self.status = None
        self.listener = self.channel = None

    def take(self, engine_socket):
        self.status, self.listener, self.channel = request_listener(
            self.sock, engine_socket, self.path
        )
        if self.listener is not None:
            self.accepter = threading.Thread(
                target=self._accept, args=(self.listener,), daemon=True
            )
            self.accepter.start()

    def _accept(self, listener):
        try:
            listener.settimeout(0.2)
        except OSError:
            return  # dropped before this thread started
        while not self.stopped:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.via_listener.append((conn.getsockname()[:2], conn.getpeername()[:2]))
            try:
                conn.sendall(self.name)
            except OSError:
                pass
            conn.close()

    def drop_listener(self):
        """As a crash would: the listener and channel closed, nothing accepted."""
        for s in (self.listener, self.channel):
            if s is not None:
                s.close()
        self.listener = self.channel = None

    def close(self, unlink=True, graceful=False):
        self.drop_listener()
        super().close(unlink=unlink, graceful=graceful)


class KernelDispatchTest(TopologyTest):
    def setUp(self):
        super().setUp()
        self.engine_socket = self.topo.path("listeners.sock")

    def listener_backend(self, name, take=False):
        b = ListenerBackend(self.topo.path(name + ".sock"), name)
        self.backends.append(b)
        return b

    def engine(self, conf, *extra):
        return Engine(
            engine_args(conf, *extra, listener_socket=self.engine_socket), ns=self.topo.server
        )

    def two_backends_config(self, web, other):
        return write(
            self.topo.path("socketbox.conf"),
            f"""max-rules:1
max-maps:1
rule-set:0 size:3
ip:{A}0/112 port:80 jump-unix:{web.path}
ip:{A}1:0:0:0/80 jump-map:0
default jump-unix:{other.path}
map-set:0 size:2 match-lip:128
ip:{A}1:0:0:7 jump-unix:{web.path}
ip:{A}1:0:0:8 fail
""",
        )

    def test_steered_connections_skip_the_engine(self):
        web = self.listener_backend("web", take=False)
        other = self.backend("other")  # never asks: the classic path
        eng = self.engine(self.two_backends_config(web, other))
        self.assertIn("kernel dispatch on", eng.output())
        web.take(self.engine_socket)
        self.assertEqual(web.status, 0)
        cases = [
            (f"{A}5", b"web"),
            (f"{A}1:0:0:7", b"web"),
            (f"{A}1:0:0:8", b""),
            (f"{A}99:1", b"other"),
            (f"{A4}9", b"other"),
        ]
        for host, want in cases * 5:
            self.assertEqual(fetch(self.topo.client, host, 80), want, host)
        # The kernel saw the real destination: what the backend reads locally.
        locals_seen = {(norm(h), p) for (h, p), _ in web.via_listener}
        self.assertIn((norm(f"{A}5"), 80), locals_seen)
        self.assertIn((norm(f"{A}1:0:0:7"), 80), locals_seen)
        self.assertEqual(len(web.via_listener), 10)
        self.assertEqual(web.count(), 0)  # nothing came the old way
        st, ks = eng.stats(), kernel_stats(eng)
        self.assertEqual(ks["steered"], 10)
        self.assertEqual(ks[f"steered:{web.path}"], 10)
        self.assertEqual(ks["passed.to_engine"], 5)  # fail
        self.assertEqual(ks["passed.no_listener"], 10)  # other: nobody took its listener
        # The engine accepted only what it was left: fail (5) and other (10).
        self.assertEqual(st["accepted"], 15)
        self.assertEqual(st["dispatched"], 10)
        self.assertEqual(st["dropped.fail"], 5)
        self.assertEqual(eng.stop(), 0)

    def test_a_listener_is_reachable_only_through_the_steering(self):
        web = self.listener_backend("web", take=False)
        other = self.backend("other")
        eng = self.engine(self.two_backends_config(web, other))
        web.take(self.engine_socket)
        self.assertEqual(web.status, 0)
        port = web.listener.getsockname()[1]
        for host in (f"{A}5", f"{A}99", "2001:db8:ffff::1"):
            s = sbxtest.socket_in(self.topo.client)
            s.settimeout(5)
            with self.assertRaises(ConnectionRefusedError, msg=f"[{host}]:{port}"):
                s.connect((host, port))
            s.close()
        self.assertEqual(kernel_stats(eng)["refused.guarded"], 3)
        self.assertEqual(web.via_listener, [])
        eng.stop()

    def test_only_the_holder_of_the_backends_socket_gets_its_listener(self):
        web = self.listener_backend("web", take=False)
        other = self.backend("other")
        eng = self.engine(self.two_backends_config(web, other))
        # A socket bound elsewhere, naming web's path as its hint.
        impostor = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        impostor.bind(self.topo.path("impostor.sock"))
        status, listener, _ = request_listener(impostor, self.engine_socket, web.path)
        self.assertEqual((status, listener), (1, None))  # EPERM
        # An unbound socket, and a stream socket, are refused too: EPERM, or
        # EAGAIN when the scan of every path was made a moment ago (a flood
        # of requests costs the engine one scan per 20 ms).
        for s in (
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM),
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM),
        ):
            status, listener, _ = request_listener(s, self.engine_socket, web.path)
            self.assertIn(status, (1, 11))
            self.assertIsNone(listener)
        # Garbage and a request without fds are dropped without an answer.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as g:
            g.sendto(b"SBXR\x03\x01" + bytes(10), self.engine_socket)
            g.sendto(b"x" * 100, self.engine_socket)
        # The real holder still gets it.
        web.take(self.engine_socket)
        self.assertEqual(web.status, 0)
        self.assertEqual(fetch(self.topo.client, f"{A}5", 80), b"web")
        ks = kernel_stats(eng)
        self.assertEqual(ks["listeners.granted"], 1)
        self.assertEqual(ks["requests.refused"], 5)
        eng.stop()

    def test_a_restarted_receiver_gets_its_queue_back(self):
        web = self.listener_backend("web", take=False)
        other = self.backend("other")
        eng = self.engine(self.two_backends_config(web, other), "--dispatch-timeout", "10000")
        web.take(self.engine_socket)
        first = web.listener.getsockname()
        web.drop_listener()  # crashed: nobody accepts
        sbxtest.wait_for(lambda: eng.has_line("its receiver is gone"), what="engine saw it")
        # Connections made meanwhile wait in the listener the engine still holds.
        clients = Clients(self.topo.client, f"{A}5", 8)
        time.sleep(0.5)
        web.take(self.engine_socket)  # the same process restarted its accept loop
        self.assertEqual(web.status, 0)
        self.assertEqual(web.listener.getsockname(), first)
        self.assertEqual(clients.results(), [b"web"] * 8)
        self.assertEqual(kernel_stats(eng)["reclaimed"], 0)
        eng.stop()

    def test_an_unattended_listener_goes_back_to_the_engine(self):
        web = self.listener_backend("web", take=False)
        other = self.backend("other")
        eng = self.engine(self.two_backends_config(web, other), "--dispatch-timeout", "1500")
        web.take(self.engine_socket)
        web.drop_listener()
        clients = Clients(self.topo.client, f"{A}5", 5)
        # Nobody comes back: the engine sends what was queued the classic way,
        # to web's datagram socket, which still serves.
        self.assertEqual(clients.results(), [b"web"] * 5)
        sbxtest.wait_for(lambda: eng.has_line("no receiver came back"), what="reclaim logged")
        self.assertEqual(fetch(self.topo.client, f"{A}5", 80), b"web")  # the engine's path now
        ks, st = kernel_stats(eng), eng.stats()
        self.assertEqual(ks["reclaimed"], 5)
        self.assertEqual(ks["reclaim_failed"], 0)
        self.assertEqual(st["dispatched"], 1)
        self.assertEqual(web.count(), 6)
        eng.stop()

    def test_reclaims_share_one_deadline_and_do_not_wait_for_each_other(self):
        # Two backends whose receivers took their listeners and vanished
        # altogether (no datagram socket either), 4 connections queued in
        # each. Taken back, each listener's connections share the deadline
        # set when it was taken back (1.5 s), and the two reclaims run side
        # by side: web, restarted in the meantime, gets its 4 at once while
        # other's wait out their deadline. Before, each connection waited
        # its own 1.5 s after the one before it, one listener after the
        # other: 12 s for the 8, and web's behind other's.
        web = self.listener_backend("web")
        other = self.listener_backend("other")
        eng = self.engine(self.two_backends_config(web, other), "--dispatch-timeout", "1500")
        web.take(self.engine_socket)
        other.take(self.engine_socket)
        web.close()
        other.close()
        to_web = Clients(self.topo.client, f"{A}5", 4, timeout=20)
        to_other = Clients(self.topo.client, f"{A}99:1", 4, timeout=20)
        sbxtest.wait_for(
            lambda: eng.output().count("no receiver came back") == 2,
            timeout=10,
            what="both listeners taken back",
        )
        taken_back = time.monotonic()
        web_again = self.backend("web")
        self.assertEqual(to_web.results(), [b"web"] * 4)
        self.assertLess(time.monotonic() - taken_back, 1.5)
        self.assertEqual(to_other.results(), [b""] * 4)
        sbxtest.wait_for(
            lambda: kernel_stats(eng)["reclaim_failed"] == 4,
            timeout=5,
            what="other's 4 closed at their deadline",
        )
        self.assertLess(time.monotonic() - taken_back, 4.0)
        ks = kernel_stats(eng)
        self.assertEqual((ks["reclaimed"], ks["reclaim_failed"]), (4, 4))
        self.assertEqual(web_again.count(), 4)
        self.assertEqual(eng.stop(), 0)

    def test_a_reclaim_after_a_blocking_receiver_loses_nothing(self):
        # The receiver accepted blocking (clearing O_NONBLOCK on the shared
        # listener), then went; 300 connections queued in its listener meet
        # a datagram queue of 10 that web reads slowly: all of them arrive.
        web = self.listener_backend("web")
        other = self.backend("other")
        eng = self.engine(self.two_backends_config(web, other), "--dispatch-timeout", "8000")
        web.take(self.engine_socket)
        web.listener.setblocking(True)
        web.drop_listener()
        web.stall_until = time.monotonic() + 3  # not reading its datagrams for a while
        clients = Clients(self.topo.client, f"{A}5", 300, timeout=30)
        self.assertEqual(clients.results(), [b"web"] * 300)
        ks = kernel_stats(eng)
        self.assertEqual((ks["reclaimed"], ks["reclaim_failed"]), (300, 0))
        # The registry was never stuck: a reload and the stop still work.
        eng.proc.send_signal(__import__("signal").SIGHUP)
        sbxtest.wait_for(lambda: eng.has_line("reloaded"), what="reload")
        self.assertEqual(eng.stop(timeout=10), 0)

    def test_a_listener_shut_down_by_its_receiver_is_replaced(self):
        web = self.listener_backend("web")
        other = self.backend("other")
        eng = self.engine(self.two_backends_config(web, other))
        web.take(self.engine_socket)
        first = web.listener.getsockname()[1]
        web.listener.shutdown(socket.SHUT_RDWR)  # wakes an accepting thread; kills the listener
        web.listener.listen(5)  # and listens again: on a new, unguarded port
        web.drop_listener()
        web.take(self.engine_socket)
        self.assertEqual(web.status, 0)
        self.assertNotEqual(web.listener.getsockname()[1], first)
        sbxtest.wait_for(
            lambda: eng.has_line("no longer listens on its port; replacing it"), what="log"
        )
        self.assertEqual(fetch(self.topo.client, f"{A}5", 80), b"web")
        self.assertEqual(len(web.via_listener), 1)
        eng.stop()

    def test_only_root_or_the_socket_files_owner_may_take_it(self):
        web = self.listener_backend("web")
        other = self.backend("other")
        eng = self.engine(self.two_backends_config(web, other))
        # The real socket, in the hands of another user (as a process that
        # made an inode number match would hold one): refused.
        script = (
            "import os, sys, socket; sys.path.insert(0, sys.argv[1]);"
            "from listener_channel import request_listener;"
            "s = socket.socket(fileno=3); os.setgid(65534); os.setuid(65534);"
            "print(request_listener(s, sys.argv[2], sys.argv[3])[0])"
        )
        lib = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib")
        os.chmod(self.topo.tmp, 0o755)  # the other user reaches the engine's socket
        out = subprocess.run(
            ["/usr/bin/python3", "-c", script, lib, self.engine_socket, web.path],
            pass_fds=(web.sock.fileno(),),
            capture_output=True,
            text=True,
            timeout=20,
            preexec_fn=lambda: os.dup2(web.sock.fileno(), 3),
        )
        self.assertEqual(out.stdout.strip(), "1", out.stderr)  # EPERM
        # Handed to the file's owner, the same socket is granted.
        os.chown(web.path, 65534, 65534)
        out = subprocess.run(
            ["/usr/bin/python3", "-c", script, lib, self.engine_socket, web.path],
            pass_fds=(web.sock.fileno(),),
            capture_output=True,
            text=True,
            timeout=20,
            preexec_fn=lambda: os.dup2(web.sock.fileno(), 3),
        )
        self.assertEqual(out.stdout.strip(), "0", out.stderr)
        eng.stop()

    def test_a_hostile_fd_cannot_stall_the_registry(self):
        # A TCP socket with SO_LINGER and unsent data to a peer that does not
        # read: closing it blocks for the linger time. Sent in a request.
        web = self.listener_backend("web")
        other = self.backend("other")
        eng = self.engine(self.two_backends_config(web, other))
        sink = socket.socket(socket.AF_INET6)
        sink.bind(("::1", 0))
        sink.listen(1)  # never accepts, never reads
        stuck = socket.socket(socket.AF_INET6)
        stuck.connect(sink.getsockname()[:2])
        stuck.setblocking(False)
        try:
            while True:
                stuck.send(b"x" * 65536)
        except BlockingIOError:
            pass
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 30))
        for _ in range(3):
            request_listener(
                None, self.engine_socket, fds=[stuck.fileno(), stuck.fileno()], expect_answer=False
            )
        stuck.close()
        started = time.monotonic()
        web.take(self.engine_socket)
        self.assertEqual(web.status, 0)
        self.assertLess(time.monotonic() - started, 2)
        self.assertEqual(fetch(self.topo.client, f"{A}5", 80), b"web")
        self.assertEqual(kernel_stats(eng)["requests.refused"], 3)
        sink.close()
        eng.stop(timeout=10)

    def test_shutdown_sends_on_what_an_unattended_listener_holds(self):
        web = self.listener_backend("web")
        other = self.backend("other")
        eng = self.engine(self.two_backends_config(web, other), "--dispatch-timeout", "30000")
        web.take(self.engine_socket)
        web.drop_listener()
        sbxtest.wait_for(lambda: eng.has_line("its receiver is gone"), what="engine saw it")
        clients = Clients(self.topo.client, f"{A}5", 4)
        time.sleep(0.5)  # queued in the listener, which the engine still steers to
        self.assertEqual(eng.stop(timeout=20), 0)
        self.assertEqual(clients.results(), [b"web"] * 4)
        self.assertIn("reclaimed=4", eng.output())

    def test_reload_swaps_the_kernels_routes(self):
        web, other = self.listener_backend("web", take=False), self.listener_backend(
            "other", take=False
        )
        conf = self.two_backends_config(web, other)
        eng = self.engine(conf)
        web.take(self.engine_socket)
        other.take(self.engine_socket)
        self.assertEqual(fetch(self.topo.client, f"{A}5", 80), b"web")
        write(
            conf,
            f"""max-rules:1
rule-set:0 size:1
default jump-unix:{other.path}
""",
        )
        eng.proc.send_signal(__import__("signal").SIGHUP)
        sbxtest.wait_for(lambda: eng.has_line("reloaded"), what="reload")
        for _ in range(5):
            self.assertEqual(fetch(self.topo.client, f"{A}5", 80), b"other")
        self.assertEqual(len(other.via_listener), 5)
        eng.stop()

    def test_an_upgrade_hands_the_listeners_and_receivers_on(self):
        web, other = self.listener_backend("web"), self.backend("other")
        conf = self.two_backends_config(web, other)
        handover = self.topo.path("handover.sock")
        old = self.engine(conf, "--handover", handover)
        web.take(self.engine_socket)
        self.assertEqual(web.status, 0)
        load = Load(self.topo.client, f"{A}5", 80)
        try:
            sbxtest.wait_for(lambda: load.total() >= 100, timeout=20, what="load")
            new = self.engine(conf, "--handover", handover)
            self.assertEqual(old.proc.wait(timeout=20), 0, old.output())
            self.assertIn("kernel dispatch on", new.output())
            before = len(web.via_listener)
            sbxtest.wait_for(
                lambda: len(web.via_listener) >= before + 100,
                timeout=20,
                what="steering after the old daemon left",
            )
        finally:
            load.stop()
        self.assertEqual(load.failures, [])
        # Every connection went through the same listener, before, during and
        # after the upgrade; none took the engine's path.
        self.assertEqual(load.greetings, {"web": len(web.via_listener)})
        self.assertEqual(web.count(), 0)
        ks = kernel_stats(new)
        self.assertGreater(ks[f"steered:{web.path}"], 0)
        self.assertEqual(ks["listeners.granted"], 0)  # adopted, not asked for again
        # The receiver is still known: its listener is attended, not reclaimed.
        self.assertTrue(
            any(f"{web.path} steered=" in l and "listener=taken" in l for l in new.lines),
            new.output(),
        )
        self.assertEqual(ks["reclaimed"], 0)
        # The listener socket's path is the new daemon's: a receiver asking now is served.
        status, listener, _ = request_listener(web.sock, self.engine_socket, web.path)
        self.assertEqual(status, 0)
        self.assertEqual(listener.getsockname(), web.listener.getsockname())
        self.assertEqual(new.stop(), 0)

    def test_reloads_and_a_receiver_restart_under_load_lose_nothing(self):
        web, other = self.listener_backend("web"), self.listener_backend("other")
        conf = self.two_backends_config(web, other)
        to_other = f"""max-rules:1
rule-set:0 size:1
default jump-unix:{other.path}
"""
        to_web = open(conf).read()
        eng = self.engine(conf, "--dispatch-timeout", "5000")
        web.take(self.engine_socket)
        other.take(self.engine_socket)
        load = Load(self.topo.client, f"{A}5", 80)
        try:
            for i in range(6):  # the route flips between the two listeners, ending on web
                before = load.total()
                sbxtest.wait_for(lambda: load.total() >= before + 100, timeout=20, what="load")
                # Replaced whole (a reload must not read a half-written file),
                # and each reload done before the next.
                write(conf + ".new", to_other if i % 2 == 0 else to_web)
                os.rename(conf + ".new", conf)
                eng.proc.send_signal(__import__("signal").SIGHUP)
                sbxtest.wait_for(lambda: eng.output().count("reloaded") == i + 1, what="reload")
            # web's receiver crashes and comes back while connections arrive.
            before = load.total()
            sbxtest.wait_for(lambda: load.total() >= before + 100, timeout=20, what="load")
            web.drop_listener()
            time.sleep(0.3)
            web.take(self.engine_socket)
            before = load.total()
            sbxtest.wait_for(lambda: load.total() >= before + 200, timeout=20, what="load after")
        finally:
            load.stop()
        self.assertEqual(load.failures, [])
        self.assertEqual(
            sum(load.greetings.values()),
            len(web.via_listener) + len(other.via_listener) + web.count() + other.count(),
        )
        self.assertGreater(len(other.via_listener), 0)
        self.assertGreater(len(web.via_listener), 0)
        ks = kernel_stats(eng)
        self.assertEqual(ks["reclaim_failed"], 0)
        self.assertEqual(eng.stop(), 0)

    def test_substituted_paths_stay_on_the_engines_path(self):
        web = self.backend("web")
        conf = write(
            self.topo.path("socketbox.conf"),
            f"""max-rules:1
rule-set:0 size:1
default jump-unix:{self.topo.path("b#//P_.sock")}
""",
        )
        os.rename(web.path, self.topo.path("b00080.sock"))
        checked = subprocess.run(
            [SOCKETBOX, "-f", conf, "-U", "--check-config"], capture_output=True, text=True
        )
        self.assertEqual(checked.returncode, 0, checked.stderr)
        self.assertEqual(checked.stdout, "OK\n")
        self.assertIn("kernel dispatch: leaves", checked.stderr)
        self.assertIn("-U: the path depends on the connection", checked.stderr)
        eng = self.engine(conf, "-U")
        self.assertIn("leaves", eng.output())
        self.assertEqual(fetch(self.topo.client, f"{A}5", 80), b"web")
        eng.stop()

    def test_a_receiver_in_another_namespace_answers_over_its_channel(self):
        # This process is in another network namespace than the engine: the
        # engine's sending socket's abstract name does not exist here, so a
        # hello or ack sent to it is refused, and goes over a channel granted
        # alone (no listener: everything comes over the datagram socket).
        path = self.topo.path("far.sock")
        conf = write(
            self.topo.path("socketbox.conf"),
            f"""max-rules:1
rule-set:0 size:1
ip:{A}0/112 port:80 jump-unix:{path}
""",
        )
        receiving = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiving.bind(path)
        self.addCleanup(receiving.close)
        eng = self.engine(conf, "--dispatch-timeout", "30000")
        status, listener, channel = request_listener(
            receiving, self.engine_socket, path, flags=REPLY_CHANNEL_ONLY
        )
        self.addCleanup(channel.close)
        self.assertEqual((status, listener), (0, None))

        def serve_message():
            msg, anc, _flags, sender = receiving.recvmsg(16, socket.CMSG_SPACE(64 * 4))
            fds = [
                fd
                for level, typ, data in anc
                if typ == socket.SCM_RIGHTS
                for fd in struct.unpack(f"{len(data) // 4}i", data)
            ]
            for fd in fds:
                with socket.socket(fileno=fd) as conn:
                    conn.sendall(b"far")
            return fds, sender

        first = Clients(self.topo.client, f"{A}1", 1)
        receiving.settimeout(10)
        fds, sender = serve_message()
        self.assertEqual(len(fds), 1)
        self.assertTrue(sender.startswith(b"\0"), sender)  # autobound: abstract
        with self.assertRaises(ConnectionRefusedError):
            receiving.sendto(HELLO_8_ACKS, sender)
        channel.send(relayed_reply(HELLO_8_ACKS, sender))
        channel.send(relayed_reply(ack(1), sender))
        self.assertEqual(first.results(), [b"far"])
        # A burst while the receiver reads nothing: its queue fills, and the
        # engine packs what waits, up to the 8 the hello declared.
        burst = Clients(self.topo.client, f"{A}2", 40)
        time.sleep(1.0)
        sizes = []
        while sum(sizes) < 40:
            fds, _ = serve_message()
            if not fds:
                continue  # a probe: the engine, holding ours, checks the socket is there
            sizes.append(len(fds))
            channel.send(relayed_reply(ack(len(fds)), sender))
        self.assertEqual(burst.results(), [b"far"] * 40)
        self.assertGreater(max(sizes), 1, sizes)
        self.assertLessEqual(max(sizes), 8, sizes)
        # Every connection was confirmed by a relayed ack: none is still held
        # (held ones count as dispatched only when acknowledged; the 30 s
        # dispatch timeout has not come).
        st, ks = eng.stats(), kernel_stats(eng)
        self.assertEqual(st["accepted"], 41)
        self.assertEqual(st["dispatched"], 41)
        self.assertEqual(st.get("unconfirmed", 0), 0)
        self.assertEqual(st.get("redelivered", 0), 0)
        self.assertEqual(ks["reply_channels.granted"], 1)
        # The last acks may still be on their way through the registry.
        sbxtest.wait_for(
            lambda: kernel_stats(eng)["replies.relayed"] == 2 + len(sizes),
            timeout=5,
            what=f"{2 + len(sizes)} replies relayed",
        )
        self.assertEqual(ks["replies.unknown_sender"], 0)
        # An answer naming a socket the engine does not have is not counted.
        channel.send(relayed_reply(ack(1), b"\0nope0"))
        sbxtest.wait_for(
            lambda: kernel_stats(eng)["replies.unknown_sender"] == 1,
            timeout=5,
            what="the unknown sender counted",
        )
        self.assertEqual(eng.stop(), 0)

    def test_without_privileges_on_refuses_and_auto_falls_back(self):
        web, other = self.backend("web"), self.backend("other")
        conf = self.two_backends_config(web, other)
        os.chmod(self.topo.tmp, 0o755)
        drop = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ]
        base = [
            SOCKETBOX,
            "-f",
            conf,
            "-l",
            "::",
            "-p",
            "8080",
            "--threads",
            "1",
            "--listener-socket",
            self.engine_socket,
        ]
        refused = subprocess.run(
            ["ip", "netns", "exec", self.topo.server] + drop + base + ["--kernel-dispatch", "on"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        self.assertEqual(refused.returncode, 1)
        self.assertIn("--kernel-dispatch on: load the kernel dispatch program", refused.stderr)
        eng = Engine(base[1:], ns=self.topo.server, wrapper=drop)  # auto, the default
        self.assertIn("kernel dispatch off (load the kernel dispatch program", eng.output())
        # The map sends this address to web whatever the port.
        self.assertEqual(fetch(self.topo.client, f"{A}1:0:0:7", 8080), b"web")
        eng.stop()


if __name__ == "__main__":
    sbxtest.run_tap(
        KernelDispatchTest, skip_reason=sbxtest.require_root_and_netns() or kernel_lacks_bpf()
    )
