"""The engine routes real connections, from a client namespace over veth to
an AnyIP /64 (and, separately, a TPROXY rule catching many ports), to the
backends the configuration names."""
import os
import socket
import struct
import subprocess
import threading
import unittest

from engine_fixture import SOCKETBOX, Backend, Engine, fetch, sbxtest, TopologyTest, write

A = "2001:db8:1::"


def norm(host):
    return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, host))


class RoutingTest(TopologyTest):
    def config(self, text):
        return write(self.topo.path("socketbox.conf"), text)

    def test_anyip_rules_maps_and_fail(self):
        web, mail, cust1, cust2, other = (
            self.backend(n) for n in ("web", "mail", "c1", "c2", "other")
        )
        conf = self.config(
            f"""max-rules:2
max-maps:1
rule-set:0 size:6
ip:{A}10 port:80 jump-unix:{web.path}
ip:{A}10 port:443 jump-unix:{web.path}
ip:{A}25 jump-unix:{mail.path}
ip:{A}1:0:0:0/80 jump-map:0
ip:{A}66 fail
default jump-unix:{other.path}
map-set:0 size:2 match-lip:128
ip:{A}1:0:0:1 jump-unix:{cust1.path}
ip:{A}1:0:0:2 jump-unix:{cust2.path}
"""
        )
        eng = Engine(
            ["-f", conf, "-l", "::", "-p", "80", "--listen", "[::]:443", "--threads", "2"],
            ns=self.topo.server,
        )
        cases = [
            (f"{A}10", 80, b"web"),
            (f"{A}10", 443, b"web"),
            (f"{A}25", 80, b"mail"),
            (f"{A}25", 443, b"mail"),
            (f"{A}1:0:0:1", 80, b"c1"),
            (f"{A}1:0:0:2", 443, b"c2"),
            (f"{A}1:0:0:3", 80, b""),
            (f"{A}66", 80, b""),
            (f"{A}99", 80, b"other"),
            (f"{A}abcd", 443, b"other"),
        ]
        for host, port, want in cases * 3:
            self.assertEqual(fetch(self.topo.client, host, port), want, f"[{host}]:{port}")
        for host, port, want in cases:
            if not want:
                continue
            b = next(x for x in self.backends if x.name == want)
            self.assertIn(
                (norm(host), port), [r[0] for r in b.received], f"{want} saw [{host}]:{port}"
            )
        st = eng.stats()
        self.assertEqual(st["accepted"], 30)
        self.assertEqual(st["dispatched"], 24)
        self.assertEqual(st["dropped.fail"], 6)  # ::66 (fail) and the map miss (default fail)
        self.assertEqual(st[f"backend:{web.path}"], 6)
        self.assertEqual(eng.stop(), 0)

    def test_exact_addresses_get_their_own_listeners(self):
        one, two = self.backend("one"), self.backend("two")
        conf = self.config(
            f"""max-rules:1
rule-set:0 size:2
ip:{A}1 jump-unix:{one.path}
ip:{A}2 jump-unix:{two.path}
"""
        )
        eng = Engine(["-f", conf, "-p", "8080", "--threads", "1"], ns=self.topo.server)
        self.assertIn("2 exact-address listener(s)", eng.output())
        for _ in range(10):
            self.assertEqual(fetch(self.topo.client, f"{A}1", 8080), b"one")
            self.assertEqual(fetch(self.topo.client, f"{A}2", 8080), b"two")
            self.assertEqual(fetch(self.topo.client, f"{A}3", 8080), b"")
        st = eng.stats()
        # Only the unnamed address needed a getsockname(2).
        self.assertEqual(st["getsockname"], 10)
        self.assertEqual(st["dispatched"], 20)
        self.assertEqual(st["dropped.fail"], 10)
        eng.stop()

    def test_no_lookup_when_no_rule_reads_a_field(self):
        b = self.backend("all")
        conf = self.config(f"max-rules:1\nrule-set:0 size:1\ndefault jump-unix:{b.path}\n")
        eng = Engine(["-f", conf, "-p", "80"], ns=self.topo.server)
        for i in range(20):
            self.assertEqual(fetch(self.topo.client, f"{A}{i + 1:x}", 80), b"all")
        st = eng.stats()
        self.assertEqual((st["getsockname"], st["getpeername"]), (0, 0))
        eng.stop()

    def test_remote_address_and_port_rules(self):
        admin, high, rest = self.backend("admin"), self.backend("high"), self.backend("rest")
        client = self.topo.client
        for extra in ("2001:db8:ffff::a1", "2001:db8:ffff::a2"):
            self.topo.ns_sh(
                client, "ip", "addr", "add", f"{extra}/64", "dev", self.veth_name(client), "nodad"
            )
        conf = self.config(
            f"""max-rules:1
rule-set:0 size:3
rip:2001:db8:ffff::a0/124 rport:5555 jump-unix:{high.path}
rip:2001:db8:ffff::a0/124 jump-unix:{admin.path}
default jump-unix:{rest.path}
"""
        )
        for io in ("uring", "sync"):
            eng = Engine(["-f", conf, "-p", "22", f"--io={io}"], ns=self.topo.server)
            self.assertEqual(fetch(client, f"{A}5", 22, source=("2001:db8:ffff::a1", 0)), b"admin")
            self.assertEqual(
                fetch(client, f"{A}5", 22, source=("2001:db8:ffff::a2", 5555)), b"high"
            )
            self.assertEqual(fetch(client, f"{A}5", 22, source=("2001:db8:ffff::2", 5555)), b"rest")
            st = eng.stats()
            # The remote address came with the accept: no getpeername(2).
            self.assertEqual(st["getpeername"], 0 if io == "uring" else 0)
            self.assertEqual(st["dispatched"], 3)
            eng.stop()

    def veth_name(self, ns):
        out = sbxtest.sh(
            "ip", "netns", "exec", ns, "ip", "-o", "link", "show", "type", "veth"
        ).stdout
        return out.split(":")[1].strip().split("@")[0]

    def test_forced_send_to_path(self):
        b = self.backend("forced")
        eng = Engine(["-S", b.path, "-l", f"{A}7", "-F", "-p", "9000"], ns=self.topo.server)
        for _ in range(5):
            self.assertEqual(fetch(self.topo.client, f"{A}7", 9000), b"forced")
        self.assertEqual(eng.stats()["dispatched"], 5)
        eng.stop()

    def test_forced_fd_over_socketpair(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        got = []

        def serve():
            while len(got) < 3:
                fd, _ = sbxtest.recv_fd(ours)
                c = socket.socket(fileno=fd)
                got.append(c.getsockname()[:2])
                c.sendall(b"pair")
                c.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        eng = Engine(
            ["-i", str(theirs.fileno()), "-p", "81"],
            ns=self.topo.server,
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        for _ in range(3):
            self.assertEqual(fetch(self.topo.client, f"{A}8", 81), b"pair")
        t.join(timeout=5)
        self.assertEqual(got[0], (f"{A}8", 81))
        # The original exits 11 when the -i peer is gone.
        ours.close()
        fetch(self.topo.client, f"{A}8", 81, timeout=2)
        sbxtest.wait_for(lambda: eng.proc.poll() is not None, timeout=10, what="exit after EPIPE")
        self.assertEqual(eng.proc.returncode, 11)

    def test_path_substitution(self):
        dir_ = self.topo.path("sub")
        os.mkdir(dir_)
        b1 = Backend(os.path.join(dir_, "00001-08443.sock"), "g7is1")
        b2 = Backend(os.path.join(dir_, "00002-08443.sock"), "g7is2")
        self.backends += [b1, b2]
        conf = self.config(
            f"max-rules:1\nrule-set:0 size:1\ndefault jump-unix:{dir_}/#//7_-#//P_.sock\n"
        )
        eng = Engine(["-f", conf, "-U", "-p", "8443"], ns=self.topo.server)
        self.assertEqual(fetch(self.topo.client, f"{A}1", 8443), b"g7is1")
        self.assertEqual(fetch(self.topo.client, f"{A}2", 8443), b"g7is2")
        self.assertEqual(fetch(self.topo.client, f"{A}3", 8443, timeout=4), b"")  # no such backend
        st = eng.stats()
        self.assertEqual(st["dispatched"], 2)
        self.assertEqual(st["dropped.backend_down"], 1)
        eng.stop()

    def test_registration_mode(self):
        for io in ("uring", "sync"):
            with self.subTest(io=io):
                self.check_registration_mode(io)

    def check_registration_mode(self, io):
        ctl_path = self.topo.path(f"ctl-{io}.sock")
        ctl = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ctl.bind(ctl_path)
        ctl.listen(1)
        b = self.backend(f"registered-{io}")
        conf = self.config(f"max-rules:1\nrule-set:0 size:1\nport:80 jump-unix:{b.path}\n")
        eng = Engine(
            ["-f", conf, "-P", f"42:{ctl_path}", "--io", io], ns=self.topo.server, wait_ready=False
        )
        conn, _ = ctl.accept()
        request = conn.recv(64)
        self.assertEqual(request, b"\x01\x00\x00\x00" + struct.pack(">I", 42))
        conn.send(b"\x80\x00\x00\x00")
        sbxtest.wait_for(lambda: eng.has_line("ready:"), what="engine ready")
        # Not a socket: refused by the strict check and counted.
        r, w = os.pipe()
        conn.sendmsg(
            [b"\x03\x00\x00\x00"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", r))]
        )
        os.close(r)
        os.close(w)
        # The registration server accepts TCP itself and passes the sockets on.
        listener = sbxtest.socket_in(self.topo.server)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("::", 80))
        listener.listen(16)
        results = []

        def client():
            results.append(fetch(self.topo.client, f"{A}4", 80))

        for _ in range(3):
            t = threading.Thread(target=client)
            t.start()
            accepted, _ = listener.accept()
            conn.sendmsg(
                [b"\x03\x00\x00\x00"],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", accepted.fileno()))],
            )
            accepted.close()
            t.join(timeout=5)
        self.assertEqual(results, [f"registered-{io}".encode()] * 3)
        st = eng.stats()
        self.assertEqual((st["accepted"], st["dispatched"], st["accept_errors"]), (3, 3, 1))
        # The server going away ends the engine with status 0.
        conn.close()
        ctl.close()
        listener.close()
        sbxtest.wait_for(lambda: eng.proc.poll() is not None, timeout=10, what="exit")
        self.assertEqual(eng.proc.returncode, 0)

    def test_systemd_inherited_listener(self):
        b = self.backend("sd")
        listener = sbxtest.socket_in(self.topo.server)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("::", 8081))
        listener.listen(64)
        fd = listener.fileno()
        # systemd passes fds from 3; LISTEN_PID must be the daemon's own pid,
        # which a shell sets just before exec.
        script = f'exec 3<&{fd}; export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web; exec "$@"'
        # sd_notify: the daemon reports READY=1 and STOPPING=1 on this socket.
        notify_path = self.topo.path("notify.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(5)
        eng = Engine.__new__(Engine)
        eng.lines, eng.lock = [], threading.Lock()
        eng.proc = sbxtest.spawn(
            ["sh", "-c", script, "sh", SOCKETBOX, "-S", b.path, "--threads", "2"],
            ns=self.topo.server,
            pass_fds=(fd,),
            stderr=subprocess.PIPE,
            text=True,
            env={"NOTIFY_SOCKET": notify_path},
        )
        eng.reader = threading.Thread(target=eng._read, daemon=True)
        eng.reader.start()
        try:
            sbxtest.wait_for(
                lambda: eng.has_line("ready:") or eng.proc.poll() is not None, what="ready"
            )
        finally:
            self.assertTrue(eng.has_line("ready:"), f"exit {eng.proc.poll()}: {eng.output()}")
        self.assertIn("systemd fd 3 (web)", eng.output())
        listener.close()
        self.assertEqual(notify.recv(64), b"READY=1")
        for _ in range(5):
            self.assertEqual(fetch(self.topo.client, f"{A}9", 8081), b"sd")
        self.assertEqual(eng.stop(), 0)
        self.assertEqual(notify.recv(64), b"STOPPING=1")
        notify.close()

    def test_exec_mode(self):
        out = self.topo.path("exec.out")
        eng = sbxtest.spawn(
            [
                os.environ.get("SBX_BUILD", "build") + "/engine/socketbox",
                "-p",
                "8082",
                "-e",
                "sh",
                "-c",
                f'echo "$SKBOX_LISTEN_FD" > {out}; '
                f"ls -l /proc/self/fd/$SKBOX_LISTEN_FD >> {out}",
            ],
            ns=self.topo.server,
        )
        self.assertEqual(eng.wait(timeout=10), 0)
        text = open(out).read()
        fd = text.splitlines()[0]
        self.assertTrue(fd.isdigit(), text)
        self.assertIn("socket:", text)


class TproxyTest(unittest.TestCase):
    def test_tproxy_catches_many_ports_on_one_listener(self):
        with sbxtest.Topology(tproxy=True) as topo:
            low = Backend(topo.path("low.sock"), "low")
            high = Backend(topo.path("high.sock"), "high")
            try:
                conf = write(
                    topo.path("t.conf"),
                    f"""max-rules:1
rule-set:0 size:2
ip:{A}/64 port:1000 jump-unix:{low.path}
ip:{A}/112 jump-unix:{high.path}
""",
                )
                topo.tproxy_ports(f"{A}/64", "1000-1999", 7000)
                eng = Engine(["-f", conf, "-t", "-l", "::", "-p", "7000"], ns=topo.server)
                self.assertEqual(fetch(topo.client, f"{A}1", 1000), b"low")
                for port in (1001, 1500, 1999):
                    self.assertEqual(fetch(topo.client, f"{A}2", port), b"high")
                    local = high.received[-1][0]
                    self.assertEqual(local, (f"{A}2", port))
                self.assertEqual(
                    fetch(topo.client, f"{A}1:0", 1234, timeout=3), b""
                )  # /112 miss: fail
                st = eng.stats()
                self.assertEqual(st["dispatched"], 4)
                self.assertEqual(st["getsockname"], 5)  # TPROXY: the listener knows nothing
                eng.stop()
            finally:
                low.close()
                high.close()


if __name__ == "__main__":
    sbxtest.run_tap(RoutingTest, TproxyTest, skip_reason=sbxtest.require_root_and_netns())
