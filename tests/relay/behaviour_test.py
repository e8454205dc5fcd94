#!/usr/bin/env python3
"""socketbox-relay with real sockets: connections from the client namespace
through our engine to the relay's receiving socket, relayed to targets on the
server namespace's loopback. Data integrity, half-close, resets, bounded
memory, timeouts, bad fds, PROXY headers, draining, metrics."""
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relay_lib as rl  # noqa: E402
from relay_lib import sbxtest  # noqa: E402
import failing_waits  # noqa: E402 (tests/lib, on the path relay_lib set)

GiB = 1 << 30


class RelayCase(unittest.TestCase):
    """A topology, the engine on SERVER_IP6/4:port and a relay at PATH."""

    PORT = 8000

    def setUp(self):
        self.topo = sbxtest.Topology()
        self.topo.__enter__()
        self.addCleanup(self.topo.close)
        self.path = self.topo.path("relay.sock")
        self.targets = []
        self.engine = None

    def target(self, handler, **kw):
        t = rl.TargetServer(self.topo.server, handler, **kw)
        self.addCleanup(t.close)
        return t

    def relay(self, args, with_engine=True):
        r = rl.Relay(
            ["-s", self.path, "--drain-timeout", "2", *args],
            ns=self.topo.server,
            wait_path=self.path,
        )
        self.addCleanup(r.stop)
        if with_engine and self.engine is None:
            self.engine = rl.Engine(self.topo, "::", self.PORT, self.path)
            self.addCleanup(self.engine.close)
        return r

    def connect(self, host=rl.SERVER_IP6, timeout=10.0):
        return sbxtest.connect_from(self.topo.client, host, self.PORT, timeout=timeout)


class DataPath(RelayCase):
    def test_bulk_one_gib_each_way_with_checksum(self):
        up, down = rl.Stream(GiB, "up"), rl.Stream(GiB, "down")
        results = {}

        def target_side(conn):
            sender = threading.Thread(
                target=lambda: (down.send(conn), conn.shutdown(socket.SHUT_WR))
            )
            sender.start()
            results["target"] = rl.receive_sha1(conn)
            sender.join()

        t = self.target(target_side)
        r = self.relay(["-p", str(t.port), "--quiet"])
        c = self.connect(timeout=120)
        start = time.monotonic()
        sender = threading.Thread(target=lambda: (up.send(c), c.shutdown(socket.SHUT_WR)))
        sender.start()
        results["client"] = rl.receive_sha1(c)
        sender.join()
        c.close()
        elapsed = time.monotonic() - start
        print(f"# 2 GiB relayed (1 each way) in {elapsed:.1f} s", flush=True)
        sbxtest.wait_for(lambda: "target" in results, timeout=60, what="target finished")
        self.assertEqual(results["target"], (GiB, up.sha1))
        self.assertEqual(results["client"], (GiB, down.sha1))
        self.assertEqual(t.errors, [])
        r.wait_stat("closed.completed", 1)
        st = r.stats()
        self.assertEqual(st["bytes_to_target"], GiB)
        self.assertEqual(st["bytes_to_client"], GiB)

    def test_many_concurrent_connections(self):
        t = self.target(rl.echo)
        r = self.relay(["-p", str(t.port), "--quiet"])
        count = 200
        socks = [self.connect() for _ in range(count)]
        payloads = [os.urandom(1000 + 97 * i) for i in range(count)]
        for s, p in zip(socks, payloads):
            s.sendall(p)
            s.shutdown(socket.SHUT_WR)
        for s, p in zip(socks, payloads):
            self.assertEqual(rl.read_all(s), p)
            s.close()
        r.wait_stat("closed.completed", count)
        self.assertEqual(r.stats()["active"], 0)

    def test_two_workers_share_the_source(self):
        t = self.target(rl.echo)
        r = self.relay(["-p", str(t.port), "--quiet", "--workers", "2"])
        socks = [self.connect() for _ in range(100)]
        for i, s in enumerate(socks):
            s.sendall(b"w%d" % i)
            s.shutdown(socket.SHUT_WR)
        for i, s in enumerate(socks):
            self.assertEqual(rl.read_all(s), b"w%d" % i)
            s.close()
        r.wait_stat("closed.completed", 100)
        # main + 2 workers (+ io_uring's own io-wq threads, if any ran)
        self.assertGreaterEqual(len(os.listdir(f"/proc/{r.proc.pid}/task")), 3)

    def test_fd_limit_raised_and_table_grown_before_the_workers(self):
        """A relayed connection holds two fds or more: the relay raises its
        soft fd limit to the hard one, and grows its fd table to it before
        its workers start (engine/sys/fd_table.h)."""
        t = self.target(rl.echo)
        r = rl.Relay(
            ["-s", self.path, "-p", str(t.port), "--quiet", "--workers", "2"],
            ns=self.topo.server,
            wait_path=self.path,
            prefix=["prlimit", "--nofile=1024:5000"],
        )
        self.addCleanup(r.stop)
        with open(f"/proc/{r.proc.pid}/limits") as f:
            soft = next(int(line.split()[3]) for line in f if line.startswith("Max open files"))
        self.assertEqual(soft, 5000)
        self.assertGreaterEqual(sbxtest.fd_table_size(r.proc.pid), 5000)
        self.assertNotIn("fd table not grown", r.output())

    def test_max_connections_makes_the_next_one_wait(self):
        t = self.target(rl.echo)
        r = self.relay(["-p", str(t.port), "--max-connections", "1"])
        first = self.connect()
        first.sendall(b"one")
        first.settimeout(5)
        self.assertEqual(first.recv(10), b"one")
        second = self.connect()
        second.sendall(b"two")
        second.settimeout(1)
        with self.assertRaises(socket.timeout):  # waits in the receive queue
            second.recv(10)
        first.close()
        second.settimeout(10)
        self.assertEqual(second.recv(10), b"two")
        self.assertEqual(r.stats()["closed.completed"], 1)
        second.close()

    def test_client_half_close_then_target_answers(self):
        def target_side(conn):
            data = rl.read_all(conn)  # until the client's FIN comes through
            conn.sendall(b"got %d" % len(data))

        t = self.target(target_side)
        self.relay(["-p", str(t.port)])
        c = self.connect()
        c.sendall(b"x" * 100000)
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(rl.read_all(c), b"got 100000")

    def test_target_half_close_then_client_still_sends(self):
        got = {}

        def target_side(conn):
            conn.sendall(b"hello")
            conn.shutdown(socket.SHUT_WR)
            got["data"] = rl.read_all(conn)

        t = self.target(target_side)
        r = self.relay(["-p", str(t.port)])
        c = self.connect()
        c.settimeout(10)
        self.assertEqual(c.recv(100), b"hello")
        self.assertEqual(c.recv(100), b"")  # the target's FIN came through
        c.sendall(b"still here")  # ...and our direction still works
        c.shutdown(socket.SHUT_WR)
        sbxtest.wait_for(lambda: "data" in got, what="target read to EOF")
        self.assertEqual(got["data"], b"still here")
        c.close()
        r.wait_stat("closed.completed", 1)

    def test_stalled_reader_keeps_memory_bounded(self):
        release = threading.Event()

        def target_side(conn):
            release.wait(60)  # reads nothing until released
            rl.read_all(conn, timeout=60)

        t = self.target(target_side)
        r = self.relay(["-p", str(t.port), "--quiet"])
        rss_before = sbxtest.rss_kib(r.proc.pid)
        c = self.connect()
        c.setblocking(False)
        block = b"z" * (1 << 20)
        sent = 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sent < 512 << 20:
            try:
                sent += c.send(block)
            except BlockingIOError:
                # Until the relay takes more, or the deadline.
                select.select([], [c], [], max(0.0, deadline - time.monotonic()))
        grown = sbxtest.rss_kib(r.proc.pid) - rss_before
        print(f"# stalled: client pushed {sent >> 20} MiB; relay RSS grew {grown} KiB", flush=True)
        # Kernel socket buffers (autotuned, a few MiB each) hold what was sent;
        # the relay itself holds at most its 2 x 64 KiB.
        self.assertLess(sent, 128 << 20)
        self.assertLess(grown, 4096)
        release.set()
        c.close()

    def test_idle_timeout_closes(self):
        t = self.target(lambda conn: rl.read_all(conn, timeout=30))
        r = self.relay(["-p", str(t.port), "--idle-timeout", "1"])
        c = self.connect()
        start = time.monotonic()
        self.assertEqual(rl.read_all(c, timeout=10), b"")
        self.assertLess(time.monotonic() - start, 5)
        r.wait_stat("closed.idle_timeout", 1)

    def test_listener_source_with_inherited_fd(self):
        t = self.target(rl.echo)
        lst = sbxtest.socket_in(self.topo.server)
        lst.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND for the AnyIP address
        lst.bind((rl.SERVER_IP6, self.PORT))
        r = rl.Relay(
            ["-l", str(lst.fileno()), "-p", str(t.port)],
            ns=self.topo.server,
            pass_fds=(lst.fileno(),),
        )
        self.addCleanup(r.stop)
        lst.close()
        sbxtest.wait_for(
            lambda: str(self.PORT) in self.topo.ns_sh(self.topo.server, "ss", "-Htln").stdout,
            what="relay listening",
        )
        c = self.connect()
        c.sendall(b"direct")
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(rl.read_all(c), b"direct")
        sbxtest.wait_for(lambda: f"[{rl.CLIENT_IP6}]:" in r.output(), what="the connection logged")

    def test_inherited_receiving_socket_with_e(self):
        t = self.target(rl.echo)
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(self.path)
        r = rl.Relay(
            ["-l", str(receiver.fileno()), "-e", "-p", str(t.port)],
            ns=self.topo.server,
            pass_fds=(receiver.fileno(),),
        )
        self.addCleanup(r.stop)
        receiver.close()
        self.engine = rl.Engine(self.topo, "::", self.PORT, self.path)
        self.addCleanup(self.engine.close)
        c = self.connect(rl.SERVER_IP4)
        c.sendall(b"inherited")
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(rl.read_all(c), b"inherited")
        sbxtest.wait_for(
            lambda: f"[::ffff:{rl.CLIENT_IP4}]:" in r.output(), what="the connection logged"
        )


class Failures(RelayCase):
    def test_target_refusing_is_counted_and_logged_once(self):
        free = socket.socket(socket.AF_INET6)
        free.bind(("::1", 0))
        port = free.getsockname()[1]  # nothing listens in the server namespace
        free.close()
        r = self.relay(["-p", str(port)])
        for _ in range(3):
            # The reset can come before connect() returns (the relay is fast,
            # the client's thread slow to be scheduled): then connect() says so.
            with self.assertRaises((ConnectionResetError, AssertionError)):
                c = self.connect()
                try:
                    if rl.read_all(c) == b"":
                        raise AssertionError("closed")  # a FIN would also tell the client
                finally:
                    c.close()
        r.wait_stat("closed.target_refused", 3)
        self.assertEqual(r.count_lines("connecting to the target failed"), 1)
        self.assertEqual(r.proc.poll(), None)

    def test_target_vanishing_resets_the_client(self):
        def target_side(conn):
            conn.recv(10)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            conn.close()

        t = self.target(target_side)
        r = self.relay(["-p", str(t.port)])
        c = self.connect()
        c.sendall(b"hi")
        with self.assertRaises(ConnectionResetError):
            rl.read_all(c)
            c.sendall(b"more")
            rl.read_all(c)
        r.wait_stat("closed.target_reset", 1)

    def test_client_reset_reaches_the_target(self):
        seen = {}

        def target_side(conn):
            try:
                rl.read_all(conn, timeout=10)
                seen["how"] = "eof"
            except ConnectionResetError:
                seen["how"] = "reset"

        t = self.target(target_side)
        r = self.relay(["-p", str(t.port)])
        c = self.connect()
        c.sendall(b"abc")
        r.wait_stat("bytes_to_target", 3)  # connected through, before the reset
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        c.close()
        sbxtest.wait_for(lambda: "how" in seen, what="target saw the end")
        self.assertEqual(seen["how"], "reset")
        r.wait_stat("closed.client_reset", 1)

    def test_connect_timeout(self):
        # SYNs to this port vanish: the connect hangs until our timeout.
        self.topo.ns_sh(
            self.topo.server,
            "nft",
            "-f",
            "-",
            input="""
table inet relaytest {
  chain out {
    type filter hook output priority 0; policy accept;
    tcp dport 9 drop
  }
}
""",
        )
        r = self.relay(["-p", "9", "--connect-timeout", "1"])
        c = self.connect()
        start = time.monotonic()
        with self.assertRaises(ConnectionResetError):
            rl.read_all(c, timeout=10)
        self.assertLess(time.monotonic() - start, 4)
        r.wait_stat("closed.connect_timeout", 1)

    def test_received_fds_that_are_not_connected_streams(self):
        t = self.target(rl.echo)
        r = self.relay(["-p", str(t.port)], with_engine=False)
        fds_before = sbxtest.fd_count(r.proc.pid)
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        unconnected = socket.socket(socket.AF_INET6)
        listening = socket.socket(socket.AF_INET6)
        listening.bind(("::1", 0))
        listening.listen()
        udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        pipe_r, pipe_w = os.pipe()
        for fd in (unconnected.fileno(), listening.fileno(), udp.fileno(), pipe_r):
            sbxtest.send_fd(sender, fd, self.path)
        sender.sendto(b"\0", self.path)  # a message with no fd at all
        r.wait_stat("closed.not_connected", 4)
        self.assertEqual(r.stats()["source_errors"], 1)
        # Still relaying, and nothing leaked.
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sbxtest.send_fd(sender, a.fileno(), self.path)
        a.close()
        b.sendall(b"unix client")
        b.shutdown(socket.SHUT_WR)
        self.assertEqual(rl.read_all(b), b"unix client")
        r.wait_stat("closed.completed", 1)
        self.assertEqual(sbxtest.fd_count(r.proc.pid), fds_before)
        for s in (sender, unconnected, listening, udp, b):
            s.close()
        os.close(pipe_r)
        os.close(pipe_w)

    def test_proxy_target_closing_early(self):
        def target_side(conn):
            rl.read_header(conn)
            conn.close()  # a server that rejects the header closes at once

        t = self.target(target_side)
        r = self.relay(["-p", str(t.port), "-i"])
        c = self.connect()
        self.assertEqual(rl.read_all(c), b"")
        c.close()
        r.wait_stat("closed.proxy_target_closed", 1)
        self.assertEqual(r.count_lines("PROXY header refused?"), 1)


class ProxyHeaders(RelayCase):
    def header_seen(self, args, host):
        got = {}

        def target_side(conn):
            got["header"] = rl.read_header(conn)
            rl.echo(conn)

        t = self.target(target_side)
        self.relay(["-p", str(t.port), *args])
        c = self.connect(host)
        c.sendall(b"payload")
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(rl.read_all(c), b"payload")
        return got["header"], c

    def test_v1_ipv6(self):
        header, _ = self.header_seen(["-i"], rl.SERVER_IP6)
        self.assertRegex(
            header, rf"^PROXY TCP6 {rl.CLIENT_IP6} {rl.SERVER_IP6} \d+ {self.PORT}\r\n$"
        )

    def test_v1_ipv4_sent_as_tcp4(self):
        header, _ = self.header_seen(["-i"], rl.SERVER_IP4)
        self.assertRegex(
            header, rf"^PROXY TCP4 {rl.CLIENT_IP4} {rl.SERVER_IP4} \d+ {self.PORT}\r\n$"
        )

    def test_v2_ipv4(self):
        header, _ = self.header_seen(["--proxy-v2"], rl.SERVER_IP4)
        self.assertEqual(header[:12], b"\r\n\r\n\0\r\nQUIT\n")
        self.assertEqual(header[12:16], b"\x21\x11\x00\x0c")
        self.assertEqual(socket.inet_ntop(socket.AF_INET, header[16:20]), rl.CLIENT_IP4)
        self.assertEqual(socket.inet_ntop(socket.AF_INET, header[20:24]), rl.SERVER_IP4)
        self.assertEqual(int.from_bytes(header[26:28], "big"), self.PORT)


class UnixClients(RelayCase):
    """A passed AF_UNIX connection has no address: the PROXY header says so
    (v1 UNKNOWN, v2 LOCAL) and the target falls back to the connection's own
    addresses, the relay's. --refuse-unix-clients closes such connections."""

    def pass_unix_client(self):
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sbxtest.send_fd(sender, a.fileno(), self.path)
        a.close()
        sender.close()
        self.addCleanup(b.close)
        return b

    def test_announced_as_unknown_by_default(self):
        got = []

        def target_side(conn):
            line = b""
            while not line.endswith(b"\r\n"):  # read_header() wants 16 bytes
                line += conn.recv(1)
            got.append(line.decode())
            rl.echo(conn)

        t = self.target(target_side)
        self.relay(["-p", str(t.port), "-i"], with_engine=False)
        b = self.pass_unix_client()
        b.sendall(b"hello")
        b.shutdown(socket.SHUT_WR)
        self.assertEqual(rl.read_all(b), b"hello")
        self.assertEqual(got, ["PROXY UNKNOWN\r\n"])

    def test_refused_with_the_option(self):
        """Issue 18 item 12: the target would take the relay's own address
        for the client's; with --refuse-unix-clients the connection is
        closed, counted (unix_refused) and logged once."""
        got = []

        def target_side(conn):
            got.append(rl.read_header(conn))
            rl.echo(conn)

        t = self.target(target_side)
        r = self.relay(
            ["-p", str(t.port), "--proxy-v2", "--refuse-unix-clients"], with_engine=False
        )
        clients = [self.pass_unix_client() for _ in range(3)]
        for b in clients:
            self.assertEqual(rl.read_all(b), b"")
        r.wait_stat("closed.unix_refused", 3)
        self.assertEqual(r.count_lines("has no client address (--refuse-unix-clients)"), 1)
        self.assertEqual(got, [])
        self.assertEqual(r.stats()["accepted"], 3)


class Registration(RelayCase):
    def test_register_source_relays_and_exits_when_the_server_leaves(self):
        ctl = self.topo.path("ctl.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(ctl)
        listener.listen(1)
        self.addCleanup(listener.close)
        t = self.target(rl.echo)
        got = {}

        def serve():  # the server side of the registration protocol (§4.2)
            conn, _ = listener.accept()
            got["request"] = conn.recv(64)
            conn.send(bytes([0x80, 0, 0, 0]))
            got["conn"] = conn

        server = threading.Thread(target=serve)
        server.start()
        r = rl.Relay(
            ["--register", f"7:{ctl}", "-p", str(t.port), "--drain-timeout", "2"],
            ns=self.topo.server,
        )
        self.addCleanup(r.stop)
        server.join(10)
        self.assertEqual(got["request"], bytes([1, 0, 0, 0, 0, 0, 0, 7]))
        # No engine here: a TCP connection made locally is passed.
        lst = sbxtest.socket_in(self.topo.server)
        lst.bind(("::1", 0))
        lst.listen(1)
        client = sbxtest.socket_in(self.topo.server)
        client.connect(lst.getsockname()[:2])
        accepted, _ = lst.accept()
        got["conn"].sendmsg(
            [bytes([3, 0, 0, 0])],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", accepted.fileno()))],
        )
        accepted.close()
        lst.close()
        client.sendall(b"registered")
        client.shutdown(socket.SHUT_WR)
        self.assertEqual(rl.read_all(client), b"registered")
        client.close()
        got["conn"].close()  # the server goes away: the relay drains and exits
        self.assertEqual(r.proc.wait(10), 0)
        self.assertIn("went away", r.output())


class Lifecycle(RelayCase):
    def test_sigterm_drains_open_connections(self):
        t = self.target(rl.echo)
        r = self.relay(["-p", str(t.port), "--drain-timeout", "10"])
        c = self.connect()
        c.sendall(b"before")
        c.settimeout(5)
        self.assertEqual(c.recv(100), b"before")
        r.proc.send_signal(signal.SIGTERM)
        sbxtest.wait_for(lambda: not os.path.exists(self.path), what="receiving path removed")
        r.wait_stat("active", 1)  # draining, the connection still held
        c.sendall(b"during drain")  # the open connection still works
        self.assertEqual(c.recv(100), b"during drain")
        self.assertIsNone(r.proc.poll())
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(rl.read_all(c), b"")
        self.assertEqual(r.proc.wait(10), 0)

    def test_drain_timeout_resets_what_is_left(self):
        t = self.target(lambda conn: rl.read_all(conn, timeout=30))
        r = self.relay(["-p", str(t.port), "--drain-timeout", "1", "--log-format", "detailed"])
        c = self.connect()
        c.sendall(b"x")
        r.wait_stat("bytes_to_target", 1)  # connected through: one for the drain to reset
        r.proc.send_signal(signal.SIGTERM)
        self.assertEqual(r.proc.wait(10), 0)
        self.assertIn("closed.drained=1", r.output())

    def failing_relay(self, ring_fd=None):
        """The relay with two workers under tests/lib/failing_waits.py:
        every wait of its rings fails as a broken ring's does (with
        `ring_fd`, only that ring's); returns it once it has exited."""
        if failing_waits.unsupported():
            self.skipTest(failing_waits.unsupported())
        t = self.target(rl.echo)
        args = ["-s", self.path, "-p", str(t.port), "--workers", "2"]
        fd = [] if ring_fd is None else ["--ring-fd", str(ring_fd)]
        r = rl.Relay(
            args, ns=self.topo.server, prefix=[sys.executable, failing_waits.__file__, *fd]
        )
        self.addCleanup(r.stop)
        self.assertEqual(r.proc.wait(10), 255, r.output())
        r.reader.join(timeout=2)
        self.assertFalse(os.path.exists(self.path))
        return r

    def test_failed_rings_stop_the_relay(self):
        # Each worker says so and ends, instead of spinning on the error.
        r = self.failing_relay()
        for worker in (0, 1):
            self.assertEqual(
                r.count_lines(
                    f"worker {worker}: io_uring_enter: Cannot allocate memory; stopping the relay"
                ),
                1,
                r.output(),
            )

    def test_one_failed_ring_stops_the_whole_relay(self):
        # The other worker is healthy: the relay stops anyway, as at
        # SIGTERM, rather than serve on with one worker short. The rings'
        # fds are the same in every start with these options (the workers
        # may swap them): the first start shows them.
        probe = rl.Relay(["-s", self.path, "-p", "9", "--workers", "2"], ns=self.topo.server)
        sbxtest.wait_for(lambda: len(failing_waits.ring_fds(probe.proc.pid)) == 2, what="two rings")
        ring_fd = max(failing_waits.ring_fds(probe.proc.pid))
        self.assertEqual(probe.stop(), 0)
        r = self.failing_relay(ring_fd)
        self.assertEqual(r.count_lines("stopping the relay"), 1, r.output())

    def test_metrics_endpoint(self):
        t = self.target(rl.echo)
        r = self.relay(["-p", str(t.port), "--metrics-listen", "[::1]:9109"])
        c = self.connect()
        c.sendall(b"count me")
        c.shutdown(socket.SHUT_WR)
        self.assertEqual(rl.read_all(c), b"count me")
        r.wait_stat("closed.completed", 1)
        text = self.topo.ns_sh(
            self.topo.server,
            "python3",
            "-c",
            "import urllib.request;print(urllib.request.urlopen("
            "'http://[::1]:9109/metrics').read().decode())",
        ).stdout
        self.assertIn('socketbox_relay_accepted_total{worker="0"} 1', text)
        self.assertIn('socketbox_relay_closed_total{worker="0",reason="completed"} 1', text)
        self.assertIn('socketbox_relay_bytes_total{worker="0",direction="to_target"} 8', text)


class DropIn(RelayCase):
    """Issue 20 items 6-9: command lines the original ran, each with the
    original's behaviour (reference §7.1, and a differential run against its
    binaries) as the expectation."""

    ORIGINAL_LINE = r"^(\d+) \[([0-9a-f:.]+)\]:(\d+) -> \[([0-9a-f:.]+)\]:(\d+)$"

    def unix_target(self):
        got = []

        def target_side(conn):
            data = rl.read_all(conn)
            got.append(data)
            conn.sendall(data)

        upath = self.topo.path("backend.sock")
        self.target(target_side, host=upath, family=socket.AF_UNIX)
        return upath, got

    def round_trip(self, payload, host=rl.SERVER_IP6):
        """Sends `payload` through the relay to an echoing target; returns
        what came back (asserted to end with the payload)."""
        c = self.connect(host)
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        back = rl.read_all(c)
        c.close()
        self.assertTrue(back.endswith(payload), back)
        return back

    def test_i_sends_no_proxy_header_to_a_unix_target(self):
        # Item 6: `-s SOCK -u PATH -i`: the original never sent a header to
        # a Unix target; its backend sees the client's bytes first.
        upath, got = self.unix_target()
        self.relay(["-u", upath, "-i"])
        self.assertEqual(self.round_trip(b"GET / HTTP/1.0\r\n\r\n"), b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(got, [b"GET / HTTP/1.0\r\n\r\n"])

    def test_proxy_to_unix_sends_the_header(self):
        upath, got = self.unix_target()
        self.relay(["-u", upath, "-i", "--proxy-to-unix"])
        self.round_trip(b"hello")
        self.assertEqual(len(got), 1)
        self.assertRegex(
            got[0].decode(),
            rf"^PROXY TCP6 {rl.CLIENT_IP6} {rl.SERVER_IP6} \d+ {self.PORT}\r\nhello$",
        )

    def test_extra_word_is_ignored_with_a_warning(self):
        # Item 7: the original's getopt skipped words that are no options
        # (and went on reading options after them); it ran.
        t = self.target(rl.echo)
        r = self.relay(["extra", "-p", str(t.port)])
        self.round_trip(b"still relays")
        self.assertIn(
            "socketbox-relay: warning: ignoring extra argument(s) after the options: " "'extra'",
            r.output(),
        )
        self.assertIsNone(r.proc.poll())

    def run_relay(self, args):
        import subprocess

        return subprocess.run(
            [rl.RELAY, *args], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        )

    def test_exit_status_as_the_original(self):
        # Item 8: a bad command line exits 1, a set-up error 255.
        for args, text in (
            (["-z"], "unknown option -z"),
            (["-p"], "missing value for -p"),
            (["-p", "abc"], "-p 'abc'"),
            (["--copy", "zero"], "--copy 'zero'"),
        ):
            out = self.run_relay(args)
            self.assertEqual(out.returncode, 1, (args, out.stderr))
            self.assertIn(text, out.stderr)
        missing_dir = self.topo.path("no-such-dir/relay.sock")
        for args, text in (
            (["-l", "0"], "-l 0: not a socket"),
            (["-s", missing_dir], f"bind {missing_dir}"),
        ):
            out = self.run_relay(args)
            self.assertEqual(out.returncode, 255, (args, out.stderr))
            self.assertIn(text, out.stderr)

    def test_bad_c_warns_and_keeps_the_default(self):
        # Item 8: the original printed a message for a bad -c and relayed
        # to the address it had (the default ::1).
        t = self.target(rl.echo)
        r = self.relay(["-c", "nowhere", "-p", str(t.port)])
        self.round_trip(b"to ::1")
        self.assertIn(
            "warning: -c 'nowhere': not an IPv6 address (write IPv4 as ::ffff:a.b.c.d); "
            "keeping ::1",
            r.output(),
        )

    def test_bad_p_prefix_warns_and_keeps_the_default(self):
        # Item 8: a bad -P keeps 64:ff9b::/96. A connection to
        # 64:ff9b::127.0.0.1 is relayed (-c's first 96 bits ::ffff:, the
        # local address's last 32) to 127.0.0.1, which only the default
        # prefix lets through.
        self.topo.ns_sh(
            self.topo.server, "ip", "-6", "route", "add", "local", "64:ff9b::/96", "dev", "lo"
        )
        t = self.target(rl.echo, host="127.0.0.1", family=socket.AF_INET)
        r = self.relay(
            ["-N", "-P", "nonsense", "-c", "::ffff:0.0.0.0", "-p", str(t.port)], with_engine=False
        )
        self.assertIn(
            "warning: -P 'nonsense': not an IPv6 prefix; keeping 64:ff9b::/96", r.output()
        )
        lst = sbxtest.socket_in(self.topo.server)
        lst.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND for the AnyIP address
        lst.bind(("64:ff9b::7f00:1", 0))
        lst.listen(1)
        client = sbxtest.socket_in(self.topo.server)
        client.connect(lst.getsockname()[:2])
        accepted, _ = lst.accept()
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sbxtest.send_fd(sender, accepted.fileno(), self.path)
        for s in (accepted, lst, sender):
            s.close()
        client.sendall(b"nat64")
        client.shutdown(socket.SHUT_WR)
        self.assertEqual(rl.read_all(client), b"nat64")
        client.close()
        r.wait_stat("closed.completed", 1)

    def connection_lines(self, r):
        return [line for line in r.output().splitlines() if "->" in line]

    def test_log_line_is_the_originals(self):
        # Item 9: "EPOCH [client]:port -> [local]:port" on stderr, no
        # prefix, IPv4 as mapped addresses; nothing else for a log parser
        # (no drain or exit summary), here through a whole run to SIGTERM.
        t = self.target(rl.echo)
        r = self.relay(["-p", str(t.port)])
        before = int(time.time())
        self.round_trip(b"six")
        self.round_trip(b"four", host=rl.SERVER_IP4)
        # A passed Unix client has no address: shown as [::]:0, still parseable.
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sbxtest.send_fd(sender, a.fileno(), self.path)
        a.close()
        sender.close()
        b.sendall(b"unix")
        b.shutdown(socket.SHUT_WR)
        self.assertEqual(rl.read_all(b), b"unix")
        b.close()
        sbxtest.wait_for(lambda: len(self.connection_lines(r)) == 3, what="three connection lines")
        after = int(time.time())
        self.assertEqual(sbxtest.stop(r.proc), 0)
        r.reader.join(timeout=2)
        lines = r.output().splitlines()
        self.assertEqual(len(lines), 3, lines)
        seen = []
        for line in lines:
            m = re.match(self.ORIGINAL_LINE, line)
            self.assertIsNotNone(m, line)
            # time(2) reads the clock as of the last tick: up to a tick
            # behind time.time(), so it may still show the second before.
            self.assertTrue(before - 1 <= int(m.group(1)) <= after, (before, after, line))
            seen.append((m.group(2), m.group(4), int(m.group(5))))
        self.assertEqual(
            seen,
            [
                (rl.CLIENT_IP6, rl.SERVER_IP6, self.PORT),
                (f"::ffff:{rl.CLIENT_IP4}", f"::ffff:{rl.SERVER_IP4}", self.PORT),
                ("::", "::", 0),
            ],
        )

    def test_log_format_detailed_is_the_richer_one(self):
        t = self.target(rl.echo)
        r = self.relay(["-p", str(t.port), "--log-format", "detailed"])
        self.round_trip(b"rich")
        sbxtest.wait_for(lambda: self.connection_lines(r), what="a connection line")
        self.assertRegex(
            self.connection_lines(r)[0],
            r"^socketbox-relay: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
            rf"\[{rl.CLIENT_IP6}\]:\d+ -> \[{rl.SERVER_IP6}\]:{self.PORT}$",
        )
        self.assertEqual(sbxtest.stop(r.proc), 0)
        r.reader.join(timeout=2)
        self.assertEqual(r.count_lines("socketbox-relay: draining: no new connections"), 1)
        self.assertEqual(r.count_lines("socketbox-relay: stats accepted=1 "), 1)


if __name__ == "__main__":
    sbxtest.run_tap(
        DataPath,
        Failures,
        ProxyHeaders,
        UnixClients,
        Registration,
        Lifecycle,
        DropIn,
        skip_reason=rl.skip_reason(),
    )
