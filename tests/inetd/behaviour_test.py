"""socketbox-inetd / -p behaviour: environment, limits, faults of the original.

Connections come from the client namespace through the acceptor (see
inetd_lib) to socketbox-inetd in the server namespace.
"""
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inetd_lib as il  # noqa: E402
from inetd_lib import sbxtest  # noqa: E402

ENV_PROG = ["sh", "-c", "env; echo END"]


def parse_env(data):
    return dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)


def read_log_until(p, text, timeout=10):
    """What p has written to stderr, read as it comes until `text` is in it
    (or p closed it: exited)."""
    fd = p.stderr.fileno()
    os.set_blocking(fd, False)
    got = bytearray()

    def seen():
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return False
        got.extend(chunk)
        return text.encode() in got or not chunk

    try:
        sbxtest.wait_for(seen, timeout=timeout, what=f"{text!r} logged")
    finally:
        os.set_blocking(fd, True)
    return got.decode(errors="replace")


class InetdBehaviour(unittest.TestCase):
    def setUp(self):
        self.topo = sbxtest.Topology().__enter__()
        self.addCleanup(self.topo.close)
        self.path = self.topo.path("inetd.sock")

    def serve(self, program, options=(), port=7000, hosts=(il.SERVER_IP6,)):
        p = il.start_inetd(self.topo, self.path, program, options)
        for host in hosts:
            a = il.acceptor(self.topo, host, port, self.path)
            self.addCleanup(a.close)
        return p

    def test_child_environment_carries_real_addresses(self):
        p = self.serve(ENV_PROG, hosts=(il.SERVER_IP6, il.SERVER_IP4))
        for host, client_ip in (
            (il.SERVER_IP6, sbxtest.CLIENT_LINK6),
            (il.SERVER_IP4, sbxtest.CLIENT_LINK4),
        ):
            c = sbxtest.connect_from(self.topo.client, host, 7000)
            client_port = c.getsockname()[1]
            env = parse_env(il.read_all(c))
            c.close()
            self.assertEqual(env.get("PROTO"), "TCP")
            self.assertEqual(env.get("TCPLOCALIP"), host)
            self.assertEqual(env.get("TCPLOCALPORT"), "7000")
            self.assertEqual(env.get("TCPREMOTEIP"), client_ip)
            self.assertEqual(env.get("TCPREMOTEPORT"), str(client_port))
            self.assertEqual(env.get("REMOTE_ADDR"), client_ip)
            self.assertEqual(env.get("REMOTE_PORT"), str(client_port))
        rc, err = il.stop_and_log(p)
        self.assertEqual(rc, 0, err)

    def test_stale_variables_do_not_leak_into_child(self):
        p = il.start_inetd(
            self.topo, self.path, ENV_PROG, ("-E",), env={"TCPREMOTEIP": "203.0.113.9"}
        )
        a = il.acceptor(self.topo, il.SERVER_IP6, 7000, self.path)
        self.addCleanup(a.close)
        c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 7000)
        env = parse_env(il.read_all(c))
        c.close()
        # -E: ours are not added, inherited ones are passed as they are.
        self.assertNotIn("TCPLOCALIP", env)
        self.assertEqual(env.get("TCPREMOTEIP"), "203.0.113.9")
        sbxtest.stop(p)
        p = il.start_inetd(self.topo, self.path, ENV_PROG, env={"TCPREMOTEIP": "203.0.113.9"})
        c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 7000)
        env = parse_env(il.read_all(c))
        c.close()
        self.assertEqual(env.get("TCPREMOTEIP"), sbxtest.CLIENT_LINK6)
        sbxtest.stop(p)

    def test_child_gets_socket_on_0_and_1_only_and_new_session(self):
        for port, method in ((7000, "spawn"), (7001, "fork")):
            with self.subTest(method=method):
                self.check_child_fds(port, method)

    def check_child_fds(self, port, method):
        p = self.serve(
            ["sh", "-c", "ls -l /proc/self/fd/; ps -o sid= -p $$; echo $$"],
            options=("-m", method),
            port=port,
        )
        inetd_sockets = {
            os.readlink(f"/proc/{p.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{p.pid}/fd")
        }
        c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, port)
        out = il.read_all(c).decode()
        c.close()
        links = dict(re.findall(r" (\d+) -> (\S+)", out))
        self.assertEqual(links["0"], links["1"])
        self.assertTrue(links["0"].startswith("socket:"))
        # No fd of the daemon's own sockets (receiving socket, signalfd) leaks.
        leaked = {fd: t for fd, t in links.items() if t in inetd_sockets and "socket" in t}
        self.assertEqual(leaked, {}, out)
        sid, pid = out.split()[-2:]
        self.assertEqual(sid, pid, "child is a session leader")
        sbxtest.stop(p)

    def test_concurrency_limit_holds_under_burst_without_loss(self):
        # 16 > net.unix.max_dgram_qlen (10): the rest waits in the acceptor.
        # Each child logs when it starts and before it ends (O_APPEND lines
        # are atomic): every logged interval lies inside the child's life,
        # and a child that replaces a reaped one logs its start after the
        # other logged its end, so the most intervals open at once is the
        # peak number of children, with nothing sampled or missed.
        limit, burst = 2, 16
        log = self.topo.path("lifetimes.log")
        child = (
            f'echo "+ $(date +%s%N)" >>{log}; sleep 0.3; echo "- $(date +%s%N)" >>{log}; echo done'
        )
        p = self.serve(["sh", "-c", child], options=("-c", str(limit)))
        fds_before = sbxtest.fd_count(p.pid)
        results = []

        def one():
            try:
                c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 7000)
                results.append(il.read_all(c, timeout=30))
                c.close()
            except OSError as e:
                results.append(repr(e).encode())

        threads = [threading.Thread(target=one) for _ in range(burst)]
        for t in threads:
            t.start()
        # Signals during the burst interrupt nothing (the original forked
        # with fd -1 after EINTR).
        for _ in range(5):
            p.send_signal(signal.SIGUSR1)
            time.sleep(0.05)  # spread over the burst: pacing, not a wait
        for t in threads:
            t.join(60)
        self.assertEqual(sorted(results), [b"done\n"] * burst)
        with open(log) as f:
            events = sorted((int(t), kind == "+") for kind, t in (l.split() for l in f))
        running = peak = 0
        for _, starts in events:  # at equal times an end sorts first
            running += 1 if starts else -1
            peak = max(peak, running)
        self.assertEqual(len(events), 2 * burst)
        self.assertEqual(peak, limit, "peak number of children")
        sbxtest.wait_for(lambda: il.children_of(p.pid) == [], what="all children reaped")
        self.assertEqual(sbxtest.fd_count(p.pid), fds_before, "no fd leaked")
        rc, err = il.stop_and_log(p)
        self.assertIn("running=0", err)
        self.assertIn(f"received={burst} spawned={burst} spawn_failed=0", err)
        self.assertIn("stats: received=", err)

    def test_per_source_limit_closes_excess_and_logs(self):
        p = self.serve(
            ["sh", "-c", "echo hi; sleep 2"],
            options=("-C", "1"),
            hosts=(il.SERVER_IP6, il.SERVER_IP4),
        )
        first = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 7000)
        first.settimeout(5)
        self.assertEqual(first.recv(3), b"hi\n")
        second = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 7000)
        self.assertEqual(il.read_all(second), b"")  # closed: same source
        other = sbxtest.connect_from(self.topo.client, il.SERVER_IP4, 7000)
        other.settimeout(5)
        self.assertEqual(other.recv(3), b"hi\n")  # another source has room
        for s in (first, second, other):
            s.close()
        rc, err = il.stop_and_log(p)
        self.assertIn(f"per-source limit (1) reached for {sbxtest.CLIENT_LINK6}", err)
        self.assertIn("per_source_rejected=1", err)

    def test_per_source_limit_by_ipv6_prefix(self):
        # A second client address in the same /64 counts as the same source.
        line = self.topo.ns_sh(self.topo.client, "ip", "-o", "-6", "addr", "show").stdout
        dev = next(l.split()[1] for l in line.splitlines() if sbxtest.CLIENT_LINK6 in l)
        other = "2001:db8:ffff::3"
        self.topo.ns_sh(self.topo.client, "ip", "addr", "add", f"{other}/64", "dev", dev, "nodad")
        p = self.serve(["sh", "-c", "echo hi; sleep 2"], options=("-C", "1", "-L", "64"))
        first = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 7000)
        first.settimeout(5)
        self.assertEqual(first.recv(3), b"hi\n")
        second = sbxtest.socket_in(self.topo.client)
        second.bind((other, 0))
        second.settimeout(5)
        second.connect((il.SERVER_IP6, 7000))
        self.assertEqual(il.read_all(second), b"")
        first.close()
        second.close()
        rc, err = il.stop_and_log(p)
        self.assertIn("per-source limit (1) reached for 2001:db8:ffff::/64", err)

    def test_spawn_failure_is_logged_and_counted(self):
        for method, expect in (
            ("spawn", "cannot start /nonexistent/prog"),
            ("fork", "exited with status 127"),
        ):
            p = self.serve(
                ["/nonexistent/prog"],
                options=("-m", method),
                port=7000 if method == "spawn" else 7001,
            )
            port = 7000 if method == "spawn" else 7001
            c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, port)
            self.assertEqual(il.read_all(c), b"")
            c.close()
            sbxtest.wait_for(lambda: il.children_of(p.pid) == [], what="child reaped")
            logged = read_log_until(p, expect)
            self.assertIsNone(p.poll(), "daemon keeps running")
            rc, err = il.stop_and_log(p)
            err = logged + err
            self.assertEqual(rc, 0)
            self.assertIn(expect, err)
            self.assertRegex(err, r"spawn_failed=1|exited_nonzero=1")

    def test_sigterm_stops_and_removes_socket(self):
        p = self.serve(["true"])
        rc, err = il.stop_and_log(p)
        self.assertEqual(rc, 0, err)
        self.assertIn("exiting on signal", err)
        self.assertFalse(os.path.exists(self.path))

    def test_sigterm_counts_queued_connections(self):
        p = il.start_inetd(self.topo, self.path, ["sh", "-c", "echo busy; sleep 5"], ("-c", "1"))
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        clients = []
        for _ in range(3):
            a, b = socket.socketpair()
            sbxtest.send_fd(sender, b.fileno(), self.path)
            b.close()
            clients.append(a)
        clients[0].settimeout(5)
        self.assertEqual(clients[0].recv(5), b"busy\n")
        rc, err = il.stop_and_log(p)
        self.assertEqual(rc, 0, err)
        self.assertIn("closed 2 queued connection(s) not served before exit", err)
        self.assertIn("received=1 spawned=1", err)
        self.assertIn("closed_at_exit=2", err)
        for c in clients[1:]:
            self.assertEqual(il.read_all(c, timeout=5), b"")  # closed, not hanging
        for c in clients:
            c.close()
        sender.close()

    def test_stale_socket_replaced_live_one_refused(self):
        p = il.start_inetd(self.topo, self.path, ["true"])
        second = il.start_inetd(self.topo, self.path + ".x", ["true"])  # other path: fine
        sbxtest.stop(second)
        dup = self.topo.spawn_server([il.binary("socketbox-inetd"), self.path, "true"])
        self.assertEqual(dup.wait(10), 1)
        self.assertIn("in use by a running process", dup.stderr.read().decode())
        sbxtest.stop(p, sig=signal.SIGKILL)  # leaves a stale socket file
        self.assertTrue(os.path.exists(self.path))
        p = il.start_inetd(self.topo, self.path, ENV_PROG)
        a = il.acceptor(self.topo, il.SERVER_IP6, 7000, self.path)
        self.addCleanup(a.close)
        c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 7000)
        self.assertIn(b"END", il.read_all(c))
        c.close()
        sbxtest.stop(p)

    def test_garbage_messages_are_rejected_without_leaks(self):
        p = self.serve(ENV_PROG)
        before = sbxtest.fd_count(p.pid)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"no fd here", self.path)
        r, w = os.pipe()
        sbxtest.send_fd(s, r, self.path)  # not a socket: strict mode rejects
        two = socket.socketpair()
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("2i", r, w))]
        s.sendmsg([b"\0"], anc, 0, self.path)  # two fds: a pipe first
        os.close(r)
        os.close(w)
        two[0].close()
        two[1].close()
        c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 7000)
        self.assertIn(b"END", il.read_all(c))
        c.close()
        s.close()
        sbxtest.wait_for(lambda: il.children_of(p.pid) == [], what="child reaped")
        self.assertEqual(sbxtest.fd_count(p.pid), before)
        rc, err = il.stop_and_log(p)
        self.assertIn("received=1 spawned=1", err)
        # The pipe, then both ends of it: socketbox-inetd takes every fd of
        # a message (receiver protocol) and judges each.
        self.assertIn("strict_rejected=3", err)

    def test_sender_uids_refuse_injected_sockets(self):
        p = il.start_inetd(self.topo, self.path, ENV_PROG, env={"SKBOX_SENDER_UIDS": "0"})
        a = il.acceptor(self.topo, il.SERVER_IP6, 7000, self.path)
        self.addCleanup(a.close)
        sbxtest.open_to(self.path)
        before = sbxtest.fd_count(p.pid)
        mine, theirs = socket.socketpair()
        self.assertTrue(sbxtest.inject_fd_as(sbxtest.NOBODY, self.path, theirs.fileno()))
        theirs.close()
        # Refused: closed unread, so our end sees EOF and no child ran.
        mine.settimeout(10)
        self.assertEqual(mine.recv(1), b"")
        mine.close()
        c = sbxtest.connect_from(self.topo.client, il.SERVER_IP6, 7000)  # root's acceptor: served
        self.assertIn(b"END", il.read_all(c))
        c.close()
        sbxtest.wait_for(lambda: il.children_of(p.pid) == [], what="child reaped")
        self.assertEqual(sbxtest.fd_count(p.pid), before)
        rc, err = il.stop_and_log(p)
        self.assertEqual(rc, 0, err)
        self.assertIn("refused 1 socket(s) from a sender not in SKBOX_SENDER_UIDS", err)
        self.assertIn("received=1 spawned=1", err)
        self.assertIn("sender_refused=1", err)

    def test_sender_uids_malformed_is_an_error(self):
        r = sbxtest.sh(
            il.binary("socketbox-inetd"),
            self.path,
            "true",
            check=False,
            env=dict(os.environ, SKBOX_SENDER_UIDS="root"),
        )
        self.assertEqual(r.returncode, 1)
        self.assertIn("SKBOX_SENDER_UIDS='root': expected uids separated by commas", r.stderr)
        self.assertFalse(os.path.exists(self.path))

    def test_bad_command_lines(self):
        cases = [
            (["socketbox-inetd"], "missing SOCKPATH"),
            (["socketbox-inetd", "-c", "x", "/tmp/s", "true"], "-c 'x'"),
            (["socketbox-inetd", "/nonexistent-dir/s.sock", "true"], "bind /nonexistent-dir"),
            (["socketbox-inetd-p", "/tmp/ctl", "nine", "true"], "GROUP 'nine'"),
            (
                ["socketbox-inetd-p", self.topo.path("no-such-ctl"), "1", "true"],
                "cannot register as group 1",
            ),
        ]
        for argv, message in cases:
            r = sbxtest.sh(il.binary(argv[0]), *argv[1:], check=False)
            self.assertEqual(r.returncode, 1, argv)
            self.assertIn(message, r.stderr, argv)
            self.assertIn(argv[0] + ":", r.stderr)


class RegistrationServer:
    """The server side of the registration protocol (reference §4.2), fed by
    an "A" datagram socket the acceptor sends to."""

    def __init__(self, ctl_path, feed_path):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(ctl_path)
        self.listener.listen(4)
        self.feed = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.feed.bind(feed_path)
        self.groups = []
        self.conn = None

    def accept_registration(self, timeout=10):
        self.listener.settimeout(timeout)
        conn, _ = self.listener.accept()
        request = conn.recv(64)
        assert len(request) == 8 and request[0] == 1, request
        self.groups.append(struct.unpack(">I", request[4:])[0])
        conn.send(bytes([0x80, 0, 0, 0]))
        self.conn = conn

    def forward_one(self, timeout=10):
        self.feed.settimeout(timeout)
        fd, _ = sbxtest.recv_fd(self.feed)
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
        self.conn.sendmsg([bytes([3, 0, 0, 0])], anc)
        os.close(fd)

    def close(self):
        for s in (self.conn, self.listener, self.feed):
            if s:
                s.close()


class InetdRegistration(unittest.TestCase):
    def test_registers_serves_and_re_registers(self):
        with sbxtest.Topology() as topo:
            ctl, feed = topo.path("ctl.sock"), topo.path("feed.sock")
            server = RegistrationServer(ctl, feed)
            try:
                a = il.acceptor(topo, il.SERVER_IP6, 7100, feed)
                p = topo.spawn_server([il.binary("socketbox-inetd-p"), ctl, "0x2a", *ENV_PROG])
                server.accept_registration()
                self.assertEqual(server.groups, [42])
                for _round in range(2):
                    c = sbxtest.connect_from(topo.client, il.SERVER_IP6, 7100)
                    server.forward_one()
                    env = parse_env(il.read_all(c))
                    c.close()
                    self.assertEqual(env.get("TCPREMOTEIP"), sbxtest.CLIENT_LINK6)
                    # The server goes away; the client registers again.
                    server.conn.close()
                    server.conn = None
                    server.accept_registration()
                self.assertEqual(server.groups, [42, 42, 42])
                rc, err = il.stop_and_log(p)
                a.close()
                self.assertEqual(rc, 0, err)
                self.assertIn("went away", err)
                self.assertIn("received=2 spawned=2", err)
            finally:
                server.close()

    def test_group_number_read_as_the_original_reads_it(self):
        # strtoul(GROUP, NULL, 0): a leading 0 is octal, as in the original.
        with sbxtest.Topology() as topo:
            ctl, feed = topo.path("ctl.sock"), topo.path("feed.sock")
            server = RegistrationServer(ctl, feed)
            try:
                p = topo.spawn_server([il.binary("socketbox-inetd-p"), ctl, "010", *ENV_PROG])
                server.accept_registration()
                self.assertEqual(server.groups, [8])
                il.stop_and_log(p)
            finally:
                server.close()

    def test_refused_and_malformed_registration(self):
        with sbxtest.Topology() as topo:
            for response, message in (
                (bytes([0, 0, 0, 0]), "the server refused the registration"),
                (b"\x80", "malformed or missing response"),
                (None, "malformed or missing response"),
            ):
                ctl = topo.path("ctl.sock")
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                listener.bind(ctl)
                listener.listen(1)
                p = topo.spawn_server([il.binary("socketbox-inetd-p"), ctl, "7", "true"])
                listener.settimeout(10)
                conn, _ = listener.accept()
                conn.recv(64)
                if response is None:
                    conn.close()  # the server vanishes before answering
                else:
                    conn.send(response)
                self.assertEqual(p.wait(10), 1)
                err = p.stderr.read().decode()
                self.assertIn(f"cannot register as group 7 at {ctl}: {message}", err)
                if conn.fileno() >= 0:
                    conn.close()
                listener.close()
                os.unlink(ctl)


if __name__ == "__main__":
    il.announce()
    sbxtest.run_tap(InetdBehaviour, InetdRegistration, skip_reason=il.skip_reason())
