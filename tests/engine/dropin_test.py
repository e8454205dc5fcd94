"""Command lines of the original daemon that must keep the original's
behaviour (issue 11): a second daemon on the same address and port is
refused unless -r; extra words after the options are ignored with a
warning; uid/gid/group numbers follow C's base-0 rules; exact-address
listeners only for the (address, port) pairs the table can route."""
import errno
import os
import socket
import struct
import subprocess

from engine_fixture import (
    SOCKETBOX,
    Engine,
    fetch,
    listening_sockets,
    sbxtest,
    TopologyTest,
    write,
)

A = "2001:db8:1::"


class DropInTest(TopologyTest):
    def second(self, args):
        """Runs a daemon that is expected to refuse to start: (status, stderr)."""
        r = subprocess.run(
            ["ip", "netns", "exec", self.topo.server, SOCKETBOX, *args],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return r.returncode, r.stderr

    def test_second_daemon_on_the_same_address_is_refused(self):
        first, other = self.backend("first"), self.backend("other")
        # Worker copies (SO_REUSEPORT set by the engine, not by the user).
        eng = Engine(["-S", first.path, "-p", "8080", "--threads", "2"], ns=self.topo.server)
        rc, err = self.second(["-S", other.path, "-p", "8080", "--threads", "2"])
        self.assertEqual(rc, 1, err)
        self.assertIn(
            f"bind [::]:8080 (a socketbox, pid {eng.proc.pid} at its start, listens there", err
        )
        self.assertIn("Address already in use", err)
        # A specific address under the first one's wildcard: the probe sees it.
        rc, err = self.second(
            ["-S", other.path, "-l", f"{A}5", "-F", "-p", "8080", "--threads", "2"]
        )
        self.assertEqual(rc, 1, err)
        self.assertIn("Address already in use", err)
        # The first daemon kept every connection.
        for _ in range(10):
            self.assertEqual(fetch(self.topo.client, f"{A}1", 8080), b"first")
        self.assertEqual(eng.stop(), 0)
        # Gone: the port (and its lock) are free again.
        eng = Engine(["-S", other.path, "-p", "8080", "--threads", "2"], ns=self.topo.server)
        self.assertEqual(fetch(self.topo.client, f"{A}1", 8080), b"other")
        eng.stop()

    def hold_lock(self, port, user=None):
        """A process holding the claim lock for [::]:PORT, as a daemon does
        from before its bind until it exits (its port is not bound here)."""
        prefix = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"] if user else []
        p = sbxtest.spawn(
            prefix
            + [
                "/usr/bin/python3",
                "-c",
                "import socket, time\n"
                "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
                f"s.bind('\\0socketbox-uring listen [::]:{port}')\n"
                "s.listen(1)\nprint('ready', flush=True)\ntime.sleep(60)\n",
            ],
            ns=self.topo.server,
            stdout=subprocess.PIPE,
        )
        self.assertEqual(p.stdout.readline().strip(), b"ready")
        self.addCleanup(sbxtest.stop, p)
        return p

    def test_daemon_between_bind_and_listen_is_seen(self):
        # Two daemons started together: the first may have bound but not yet
        # listen()ed, which no probe can see; its lock is there from before
        # its bind, so the second is refused (not let into the group).
        holder = self.hold_lock(8090)
        b = self.backend("b")
        rc, err = self.second(["-S", b.path, "-p", "8090", "--threads", "2"])
        self.assertEqual(rc, 1, err)
        self.assertIn(
            f"bind [::]:8090 (a socketbox, pid {holder.pid} at its start, listens there", err
        )

    def test_lock_squatted_by_another_user_is_ignored(self):
        # Anyone may bind an abstract name: another user's must not keep the
        # daemon from starting (the probe still guards the port).
        self.hold_lock(8086, user="nobody")
        b = self.backend("b")
        eng = Engine(["-S", b.path, "-p", "8086", "--threads", "2"], ns=self.topo.server)
        nobody = sbxtest.sh("id", "-u", "nobody").stdout.strip()
        self.assertIn(f"is held by uid {nobody}", eng.output())
        self.assertEqual(fetch(self.topo.client, f"{A}1", 8086), b"b")
        eng.stop()

    def test_reuseport_shares_the_port_when_asked(self):
        one, two = self.backend("one"), self.backend("two")
        a = Engine(["-S", one.path, "-p", "8081", "-r", "--threads", "2"], ns=self.topo.server)
        b = Engine(["-S", two.path, "-p", "8081", "-r", "--threads", "2"], ns=self.topo.server)
        seen = {fetch(self.topo.client, f"{A}1", 8081) for _ in range(40)}
        self.assertEqual(seen, {b"one", b"two"})
        a.stop()
        b.stop()

    def test_a_listener_of_another_program_is_refused(self):
        # A listener with SO_REUSEPORT of the same user (the original socketbox
        # with -r, or any server): the engine's copies would join it.
        other = sbxtest.socket_in(self.topo.server)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("::", 8082))
        other.listen(8)
        b = self.backend("b")
        rc, err = self.second(["-S", b.path, "-p", "8082", "--threads", "2"])
        other.close()
        self.assertEqual(rc, 1, err)
        self.assertIn("bind [::]:8082: Address already in use", err)

    def bind_after(self, host, port):
        """Another program (root, SO_REUSEPORT, as a server started after the
        daemon would): the errno of its bind, or 0 when it got in."""
        family = socket.AF_INET if "." in host else socket.AF_INET6
        other = sbxtest.socket_in(self.topo.server, family)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            other.setsockopt(socket.IPPROTO_IPV6, 78, 1)  # IPV6_FREEBIND: the prefix is AnyIP
        try:
            other.bind((host, port))
            other.listen(8)
            return 0
        except OSError as e:
            return e.errno
        finally:
            other.close()

    def test_no_other_program_joins_the_daemons_port(self):
        # The engine sets SO_REUSEPORT on its own for its worker copies and
        # for exact-address listeners; with the original (no SO_REUSEPORT
        # unless -r) a later bind failed with EADDRINUSE, and it must still.
        one = self.backend("one")
        conf = write(
            self.topo.path("socketbox.conf"),
            f"max-rules:1\nrule-set:0 size:2\nip:{A}5 jump-unix:{one.path}\n"
            f"default jump-unix:{one.path}\n",
        )
        for threads, port in (("2", 8087), ("1", 8088)):
            eng = Engine(["-f", conf, "-p", str(port), "--threads", threads], ns=self.topo.server)
            self.assertIn("1 exact-address listener(s)", eng.output())
            for host in ("::", f"{A}5", f"{A}6", "0.0.0.0"):
                self.assertEqual(self.bind_after(host, port), errno.EADDRINUSE, (threads, host))
            # Every connection still reaches the daemon.
            for host in (f"{A}5", f"{A}6") * 5:
                self.assertEqual(fetch(self.topo.client, host, port), b"one", (threads, host))
            self.assertEqual(eng.stop(), 0)
        # -r asks to share the port: then another program may join.
        eng = Engine(["-f", conf, "-p", "8089", "--threads", "2", "-r"], ns=self.topo.server)
        self.assertEqual(self.bind_after("::", 8089), 0)
        eng.stop()

    def test_inherited_listener_still_works(self):
        # -s: the socket is the caller's; nothing is claimed or refused.
        b = self.backend("inherited")
        held = sbxtest.socket_in(self.topo.server)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("::", 8083))
        eng = Engine(
            ["-S", b.path, "-s", str(held.fileno()), "--threads", "2"],
            ns=self.topo.server,
            pass_fds=[held.fileno()],
        )
        held.close()
        self.assertEqual(fetch(self.topo.client, f"{A}1", 8083), b"inherited")
        # ... and a daemon of ours binding the same port is refused.
        rc, err = self.second(["-S", b.path, "-p", "8083", "--threads", "2"])
        self.assertEqual(rc, 1, err)
        self.assertIn("Address already in use", err)
        eng.stop()

    def test_extra_words_after_the_options_are_ignored(self):
        b = self.backend("extra")
        conf = write(
            self.topo.path("socketbox.conf"),
            f"max-rules:1\nrule-set:0 size:1\ndefault jump-unix:{b.path}\n",
        )
        eng = Engine(["-f", conf, "-p", "8084", "extra"], ns=self.topo.server)
        self.assertIn("ignoring extra argument(s) after the options: 'extra'", eng.output())
        self.assertEqual(fetch(self.topo.client, f"{A}1", 8084), b"extra")
        eng.stop()

    def test_uid_and_gid_numbers_are_read_as_c_does(self):
        # -u 010 -g 0x8 -G 011,0xa: uid 8, gid 8, groups 9 and 10 (strtoll base 0),
        # not uid 10 and an error.
        os.chmod(self.topo.tmp, 0o755)
        b = self.backend("b")
        eng = Engine(
            ["-S", b.path, "-p", "8085", "-u", "010", "-g", "0x8", "-G", "011,0xa"],
            ns=self.topo.server,
        )
        status = sbxtest.proc_status(eng.proc.pid)
        self.assertEqual(status["Uid"].split(), ["8"] * 4)
        self.assertEqual(status["Gid"].split(), ["8"] * 4)
        self.assertEqual(sorted(status["Groups"].split()), ["10", "9"])
        eng.stop()

    def test_registration_group_is_read_as_c_does(self):
        ctl_path = self.topo.path("ctl.sock")
        ctl = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ctl.bind(ctl_path)
        ctl.listen(1)
        eng = Engine(
            ["-S", "/nonexistent", "-P", f"010:{ctl_path}"], ns=self.topo.server, wait_ready=False
        )
        ctl.settimeout(10)
        conn, _ = ctl.accept()
        self.assertEqual(conn.recv(64), b"\x01\x00\x00\x00" + struct.pack(">I", 8))
        conn.close()
        ctl.close()
        eng.stop()

    def test_exact_listeners_only_for_routable_pairs(self):
        one, two, three = (self.backend(n) for n in ("one", "two", "three"))
        conf = write(
            self.topo.path("socketbox.conf"),
            f"""max-rules:1
rule-set:0 size:3
ip:{A}1 port:80 jump-unix:{one.path}
ip:{A}2 port:443 jump-unix:{two.path}
ip:{A}3 jump-unix:{three.path}
""",
        )
        eng = Engine(
            ["-f", conf, "--listen", "[::]:80", "--listen", "[::]:443", "--threads", "1"],
            ns=self.topo.server,
        )
        # (::1, 80), (::2, 443), (::3, 80), (::3, 443): not ::1 on 443 nor ::2 on 80.
        self.assertIn("4 exact-address listener(s)", eng.output())
        on80 = " ".join(listening_sockets(self.topo.server, 80))
        on443 = " ".join(listening_sockets(self.topo.server, 443))
        self.assertIn(f"[{A}1]:80", on80)
        self.assertNotIn(f"[{A}2]:80", on80)
        self.assertIn(f"[{A}2]:443", on443)
        self.assertNotIn(f"[{A}1]:443", on443)
        for host, port, want in (
            (f"{A}1", 80, b"one"),
            (f"{A}2", 443, b"two"),
            (f"{A}3", 443, b"three"),
            (f"{A}1", 443, b""),
            (f"{A}2", 80, b""),
        ):
            self.assertEqual(fetch(self.topo.client, host, port), want, (host, port))
        st = eng.stats()
        # Only the two pairs no exact listener serves cost a getsockname(2).
        self.assertEqual(st["getsockname"], 2)
        eng.stop()


if __name__ == "__main__":
    sbxtest.run_tap(DropInTest, skip_reason=sbxtest.require_root_and_netns())
