#!/usr/bin/env python3
"""The fds a configuration (jump-fd:N) or -i N names are checked before use
(issue 9 §3). Reproduced before the check: `default jump-fd:20` with fd 20
not open passed --check-config and started; accepted connections then took
fd number 20 and other connections were written into them. Now: start-up
refuses with the file, line and fd and binds nothing; a reload keeps the
running table and says why; --check-config checks in its own fd
environment; a valid inherited fd still carries connections."""
import os
import signal
import socket
import subprocess
import threading
import unittest

from engine_fixture import SOCKETBOX, Engine, fetch, listening_sockets, sbxtest, write

A = "2001:db8:1::"


class FdBackend:
    """The receiving end of a Unix socketpair whose other end the daemon
    inherits at fd number `number`: greets each connection with `name`."""

    def __init__(self, number, name, type_=socket.SOCK_DGRAM):
        self.ours, theirs = socket.socketpair(socket.AF_UNIX, type_)
        os.dup2(theirs.fileno(), number)  # inheritable, at the number the config names
        theirs.close()
        self.number, self.name, self.got = number, name.encode(), 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                fd, _ = sbxtest.recv_fd(self.ours)
            except OSError:
                return
            if fd is None:
                return
            c = socket.socket(fileno=fd)
            self.got += 1
            try:
                c.sendall(self.name)
            finally:
                c.close()

    def close(self):
        os.close(self.number)
        self.ours.close()


def no_fd_at(number):
    try:
        os.close(number)
    except OSError:
        pass


class StartUpTest(unittest.TestCase):
    def test_jump_fd_not_open_is_refused_and_nothing_is_bound(self):
        with sbxtest.Topology() as topo:
            conf = write(
                topo.path("f.conf"),
                "max-rules:1\nrule-set:0 size:1\nport:81 fail\ndefault jump-fd:20\n",
            )
            no_fd_at(20)
            for io in ("uring", "sync"):
                eng = Engine(
                    ["-f", conf, "-p", "80", f"--io={io}"], ns=topo.server, wait_ready=False
                )
                self.assertEqual(eng.proc.wait(timeout=10), 1)
                eng.reader.join(timeout=2)
                self.assertIn(
                    f"{conf}:4: error: near 'jump-fd:20': fd 20 is not open", eng.output()
                )
                self.assertNotIn("ready:", eng.output())
                self.assertEqual(listening_sockets(topo.server, 80), [])

    def test_forced_fd_on_a_pipe_is_refused(self):
        with sbxtest.Topology() as topo:
            proc = sbxtest.spawn(
                [SOCKETBOX, "-i", "1", "-p", "80"],
                ns=topo.server,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            _, err = proc.communicate(timeout=10)
            self.assertEqual(proc.returncode, 1, err)
            self.assertIn("-i 1: fd 1 is a pipe, not a socket", err)
            self.assertEqual(listening_sockets(topo.server, 80), [])

    def test_unfit_sockets_are_named(self):
        """An inherited TCP socket and a listening Unix socket, each at the
        number the file names: refused with what each one is."""
        with sbxtest.Topology() as topo:
            tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listening.bind(topo.path("l.sock"))
            listening.listen(1)
            os.dup2(tcp.fileno(), 30)
            os.dup2(listening.fileno(), 31)
            try:
                conf = write(
                    topo.path("u.conf"),
                    "max-rules:1\nrule-set:0 size:2\nport:81 jump-fd:30\nport:82 jump-fd:31\n",
                )
                eng = Engine(
                    ["-f", conf, "-p", "80"], ns=topo.server, pass_fds=(30, 31), wait_ready=False
                )
                self.assertEqual(eng.proc.wait(timeout=10), 1)
                eng.reader.join(timeout=2)
                out = eng.output()
                self.assertIn(
                    f"{conf}:3: error: near 'jump-fd:30': fd 30 is an AF_INET6 socket, "
                    "not a Unix socket",
                    out,
                )
                self.assertIn(
                    f"{conf}:4: error: near 'jump-fd:31': fd 31 is a listening Unix stream "
                    "socket, not a connected one",
                    out,
                )
            finally:
                for fd in (30, 31):
                    os.close(fd)
                tcp.close()
                listening.close()


class CheckConfigTest(unittest.TestCase):
    def run_check(self, conf, pass_fds=()):
        return subprocess.run(
            [SOCKETBOX, "-f", conf, "--check-config"],
            pass_fds=pass_fds,
            capture_output=True,
            text=True,
            timeout=10,
        )

    def test_checks_in_its_own_fd_environment(self):
        with sbxtest.Topology() as topo:
            conf = write(
                topo.path("c.conf"), "max-rules:1\nrule-set:0 size:1\ndefault jump-fd:20\n"
            )
            no_fd_at(20)
            r = self.run_check(conf)
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"{conf}:3: error: near 'jump-fd:20': fd 20 is not open", r.stderr)
            self.assertEqual(r.stdout, "")
            b = FdBackend(20, "x")
            try:
                r = self.run_check(conf, pass_fds=(20,))
                # Only kernel dispatch's note on jump-fd (docs/kernel-dispatch.md).
                self.assertEqual((r.returncode, r.stdout), (0, "OK\n"))
                self.assertEqual(
                    [l for l in r.stderr.splitlines() if not l.startswith("kernel dispatch: ")], []
                )
            finally:
                b.close()


class InheritedFdTest(unittest.TestCase):
    def test_valid_inherited_fds_carry_connections(self):
        """Datagram and stream socketpairs at the named numbers: delivered,
        in both I/O modes."""
        with sbxtest.Topology() as topo:
            dgram, stream = FdBackend(20, "dgram"), FdBackend(21, "stream", socket.SOCK_STREAM)
            try:
                conf = write(
                    topo.path("v.conf"),
                    "max-rules:1\nrule-set:0 size:1\nport:81 jump-fd:21\ndefault jump-fd:20\n",
                )
                for io in ("uring", "sync"):
                    eng = Engine(
                        ["-f", conf, "-p", "80", "--listen", "[::]:81", f"--io={io}"],
                        ns=topo.server,
                        pass_fds=(20, 21),
                    )
                    for _ in range(3):
                        self.assertEqual(fetch(topo.client, f"{A}1", 80), b"dgram")
                        self.assertEqual(fetch(topo.client, f"{A}1", 81), b"stream")
                    st = eng.stats()
                    self.assertEqual((st["accepted"], st["dispatched"]), (6, 6))
                    self.assertEqual(eng.stop(), 0)
                self.assertEqual((dgram.got, stream.got), (6, 6))
            finally:
                dgram.close()
                stream.close()

    def test_reload_naming_a_bad_fd_keeps_the_running_table(self):
        with sbxtest.Topology() as topo:
            good = FdBackend(20, "good")
            r, w = os.pipe()
            os.dup2(r, 61)
            os.close(r)
            os.close(w)
            no_fd_at(60)
            try:
                conf = write(
                    topo.path("r.conf"), "max-rules:1\nrule-set:0 size:1\ndefault jump-fd:20\n"
                )
                eng = Engine(["-f", conf, "-p", "80"], ns=topo.server, pass_fds=(20, 61))
                self.assertEqual(fetch(topo.client, f"{A}1", 80), b"good")
                # The daemon's own sockets are never taken for inherited ones:
                # its highest fd below 20 is one it opened (a listener, a ring, ...).
                own = max(int(n) for n in os.listdir(f"/proc/{eng.proc.pid}/fd") if int(n) < 20)
                self.assertGreater(own, 2)
                bad = [
                    ("fd 60 is not open", 60),
                    ("fd 61 is a pipe, not a socket", 61),
                    (f"fd {own} was not open when socketbox started", own),
                ]
                for n, (why, fd) in enumerate(bad, start=1):
                    write(
                        conf,
                        f"max-rules:1\nrule-set:0 size:2\nport:81 fail\ndefault jump-fd:{fd}\n",
                    )
                    eng.proc.send_signal(signal.SIGHUP)
                    sbxtest.wait_for(
                        lambda: eng.output().count("keeping the running configuration") == n,
                        what=f"reload {n} refused",
                    )
                    self.assertIn(f"{conf}:4: error: near 'jump-fd:{fd}': {why}", eng.output())
                    self.assertEqual(fetch(topo.client, f"{A}1", 80), b"good")
                # A good file is taken again.
                write(conf, "max-rules:1\nrule-set:0 size:2\nport:80 fail\ndefault jump-fd:20\n")
                eng.proc.send_signal(signal.SIGHUP)
                sbxtest.wait_for(lambda: eng.has_line(f"reloaded {conf}"), what="reload taken")
                self.assertEqual(fetch(topo.client, f"{A}1", 80, timeout=3), b"")
                self.assertEqual(eng.output().count("keeping the running configuration"), len(bad))
                st = eng.stats()
                self.assertEqual(st["dispatched"], 1 + len(bad))
                self.assertEqual(eng.stop(), 0)
                self.assertEqual(good.got, 1 + len(bad))
            finally:
                good.close()
                os.close(61)


if __name__ == "__main__":
    sbxtest.run_tap(
        StartUpTest, CheckConfigTest, InheritedFdTest, skip_reason=sbxtest.require_root_and_netns()
    )
