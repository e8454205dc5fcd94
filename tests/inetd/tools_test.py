"""The small tools: send-receive-fd, socket-query, socketbox-bind-exec."""
import os
import socket
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inetd_lib as il  # noqa: E402
from inetd_lib import sbxtest  # noqa: E402


def run(argv, pass_fds=(), **kw):
    return subprocess.run(argv, pass_fds=pass_fds, capture_output=True, text=True, timeout=20, **kw)


def tcp_pair(family, host):
    listener = socket.socket(family)
    listener.bind((host, 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname()[:2])
    server, _ = listener.accept()
    listener.close()
    return client, server


def eight_groups(ip):
    packed = socket.inet_pton(socket.AF_INET6, ip)
    return ":".join(packed[i : i + 2].hex() for i in range(0, 16, 2))


class SocketQuery(unittest.TestCase):
    def check(self, family, host, mapped):
        client, server = tcp_pair(family, host)
        with client, server:
            lport, rport = server.getsockname()[1], server.getpeername()[1]
            addr = eight_groups(mapped)
            fd = server.fileno()
            q = lambda *o: run([il.binary("socket-query"), *o, "-f", str(fd)], pass_fds=[fd])
            self.assertEqual(q().stdout, f"[{addr}]:{lport} [{addr}]:{rport}\n")
            self.assertEqual(q("-l").stdout, f"[{addr}]:{lport}\n")
            self.assertEqual(q("-la").stdout, f"{addr}\n")
            self.assertEqual(q("-rp").stdout, f"{rport}\n")
            self.assertEqual(q("-r", "-p", "-R").stdout, f"{rport:04X}\n")
            raw = addr.replace(":", "").upper()
            self.assertEqual(q("-l", "-R").stdout, f"{raw}:{lport:04X}\n")
            # Default fd 0, as an inetd child has it.
            r = run([il.binary("socket-query"), "-la"], stdin=server)
            self.assertEqual(r.stdout, f"{addr}\n")

    def test_ipv6(self):
        self.check(socket.AF_INET6, "::1", "::1")

    def test_ipv4_prints_mapped(self):
        self.check(socket.AF_INET, "127.0.0.1", "::ffff:127.0.0.1")

    def test_extra_words_are_ignored_as_the_original_does(self):
        # socket-query -lp -f 9 extra: the original ignores "extra".
        client, server = tcp_pair(socket.AF_INET6, "::1")
        with client, server:
            fd = server.fileno()
            r = run([il.binary("socket-query"), "-lp", "-f", str(fd), "extra"], pass_fds=[fd])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, f"{server.getsockname()[1]}\n")
            self.assertIn("ignoring extra argument(s)", r.stderr)

    def test_errors(self):
        for argv, message in (
            (["-a"], "usage"),
            (["-f", "x"], "-f 'x'"),
            (["-f", "77"], "fd 77"),
            (["-lz"], "socket-query: invalid option -- 'z'\n"),
            (["-f"], "socket-query: option requires an argument -- 'f'\n"),
            (["--local"], "socket-query: invalid option -- '-'\n"),
        ):
            r = run([il.binary("socket-query"), *argv])
            self.assertEqual(r.returncode, 1, argv)
            self.assertIn(message, r.stderr)
        # A refused command line is followed by the usage, a line per option.
        r = run([il.binary("socket-query"), "-a"])
        self.assertTrue(
            r.stderr.startswith("socket-query: usage: socket-query [-l[a|p]]"), r.stderr
        )
        for option in ("-l", "-r", "-a", "-p", "-R", "-f SOCKET_FD"):
            self.assertIn(f"\nsocket-query:   {option} ", r.stderr)
        a, b = socket.socketpair()
        with a, b:
            r = run([il.binary("socket-query"), "-f", str(a.fileno())], pass_fds=[a.fileno()])
            self.assertEqual(r.returncode, 1)
            self.assertIn("not an IPv4 or IPv6 socket", r.stderr)

    def test_write_error_on_stdout_is_reported(self):
        # Issue 20 item 5: with stdout on a full device the tool exited 1
        # without a word. The original says "stdout: write error: No space
        # left on device" on stderr; so does this (after its name).
        client, server = tcp_pair(socket.AF_INET6, "::1")
        with client, server, open("/dev/full", "w") as full:
            fd = server.fileno()
            r = subprocess.run(
                [il.binary("socket-query"), "-lp", "-f", str(fd)],
                pass_fds=[fd],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=20,
            )
            self.assertEqual(r.returncode, 1)
            self.assertEqual(
                r.stderr, "socket-query: stdout: write error: No space left on device\n"
            )
            # A closed stdout: the same report, with its own reason.
            r = run(
                [
                    "sh",
                    "-c",
                    'exec "$@" >&-',
                    "sh",
                    il.binary("socket-query"),
                    "-lp",
                    "-f",
                    str(fd),
                ],
                pass_fds=[fd],
            )
            self.assertEqual(r.returncode, 1)
            self.assertIn("stdout: write error: Bad file descriptor", r.stderr)


class SendReceiveFd(unittest.TestCase):
    def test_round_trip_and_program_gets_fd(self):
        chan_a, chan_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        client, server = tcp_pair(socket.AF_INET6, "::1")
        with chan_a, chan_b, client, server:
            r = run(
                [il.binary("send-receive-fd"), "-s", str(server.fileno()), str(chan_a.fileno())],
                pass_fds=[server.fileno(), chan_a.fileno()],
            )
            self.assertEqual(r.returncode, 0, r.stderr)
            script = 'echo "fd=$SKBOX_RECEIVED_FD"; socket-query -rp -f "$SKBOX_RECEIVED_FD"'
            env = dict(
                os.environ,
                PATH=os.path.dirname(il.binary("socket-query")) + ":" + os.environ["PATH"],
            )
            r = run(
                [il.binary("send-receive-fd"), "-r", str(chan_b.fileno()), "sh", "-c", script],
                pass_fds=[chan_b.fileno()],
                env=env,
            )
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.split()
            self.assertRegex(lines[0], r"^fd=\d+$")
            self.assertEqual(lines[1], str(client.getsockname()[1]))

    def send_then_receive(self, send_argv, receive_argv):
        """Sends a TCP socket with send_argv (SOCKFD and the fd to send are
        formatted in as {chan} and {fd}), receives it with receive_argv
        ({chan}), whose program prints the received socket's local port."""
        chan_a, chan_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        client, server = tcp_pair(socket.AF_INET6, "::1")
        with chan_a, chan_b, client, server:
            fmt = lambda argv, chan: [a.format(chan=chan, fd=server.fileno()) for a in argv]
            r = run(
                [il.binary("send-receive-fd"), *fmt(send_argv, chan_a.fileno())],
                pass_fds=[server.fileno(), chan_a.fileno()],
            )
            self.assertEqual(r.returncode, 0, r.stderr)
            env = dict(
                os.environ,
                PATH=os.path.dirname(il.binary("socket-query")) + ":" + os.environ["PATH"],
            )
            r = run(
                [il.binary("send-receive-fd"), *fmt(receive_argv, chan_b.fileno())],
                pass_fds=[chan_b.fileno()],
                env=env,
            )
            self.assertEqual(r.returncode, 0, r.stderr)
            return r.stdout.split(), server.getsockname()[1]

    def test_options_permute_as_with_the_original_getopt(self):
        query = 'socket-query -lp -f "$SKBOX_RECEIVED_FD"; echo "$0"'
        for send_argv, receive_argv in (
            (["-s{fd}", "{chan}"], ["-r", "{chan}", "--", "sh", "-c", query, "Z"]),
            (["{chan}", "-s", "{fd}"], ["{chan}", "-r", "sh", "-c", query, "Z"]),
            (["-s", "{fd}", "--", "{chan}"], ["-r", "--", "{chan}", "sh", "-c", query, "Z"]),
        ):
            out, port = self.send_then_receive(send_argv, receive_argv)
            self.assertEqual(out, [str(port), "Z"], (send_argv, receive_argv))

    def receive_and_describe(self, fd, strict=None):
        """Sends fd with send-receive-fd -s, then runs the issue's command
        line: send-receive-fd -r SOCKFD -- sh -c 'readlink ...', with
        SKBOX_STRICT_STREAM_MODE set to `strict` (None: unset)."""
        env = {k: v for k, v in os.environ.items() if k != "SKBOX_STRICT_STREAM_MODE"}
        if strict is not None:
            env["SKBOX_STRICT_STREAM_MODE"] = strict
        chan_a, chan_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with chan_a, chan_b:
            r = run(
                [il.binary("send-receive-fd"), "-s", str(fd), str(chan_a.fileno())],
                pass_fds=[fd, chan_a.fileno()],
            )
            self.assertEqual(r.returncode, 0, r.stderr)
            return run(
                [
                    il.binary("send-receive-fd"),
                    "-r",
                    str(chan_b.fileno()),
                    "--",
                    "sh",
                    "-c",
                    "readlink /proc/self/fd/$SKBOX_RECEIVED_FD",
                ],
                pass_fds=[chan_b.fileno()],
                env=env,
            )

    def test_any_fd_is_passed_on_as_the_original_does(self):
        # Issue 20 item 1: a pipe (or a file, a UDP or a listening socket)
        # was closed silently and the tool then waited forever for another
        # fd. The original runs the program with whatever fd came.
        read_end, write_end = os.pipe()
        udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        listener = socket.socket(socket.AF_INET6)
        listener.bind(("::1", 0))
        listener.listen(1)
        with open(os.path.abspath(__file__)) as f, udp, listener:
            try:
                for fd, expected in (
                    (read_end, f"pipe:[{os.fstat(read_end).st_ino}]"),
                    (f.fileno(), os.path.abspath(__file__)),
                    (udp.fileno(), f"socket:[{os.fstat(udp.fileno()).st_ino}]"),
                    (listener.fileno(), f"socket:[{os.fstat(listener.fileno()).st_ino}]"),
                ):
                    r = self.receive_and_describe(fd)
                    self.assertEqual((r.returncode, r.stdout, r.stderr), (0, expected + "\n", ""))
            finally:
                os.close(read_end)
                os.close(write_end)

    def test_strict_mode_is_opt_in_and_a_refused_fd_is_reported(self):
        read_end, write_end = os.pipe()
        udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        client, server = tcp_pair(socket.AF_INET6, "::1")
        with udp, client, server:
            try:
                for level, fd in (("2", read_end), ("1", udp.fileno())):
                    r = self.receive_and_describe(fd, strict=level)
                    self.assertEqual(r.returncode, 1)
                    self.assertEqual(r.stdout, "")  # the program did not run
                    self.assertIn("is not a connected stream socket", r.stderr)
                    self.assertIn(f"SKBOX_STRICT_STREAM_MODE={level}", r.stderr)
                    self.assertIn("sh not run", r.stderr)
                r = self.receive_and_describe(server.fileno(), strict="2")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, f"socket:[{os.fstat(server.fileno()).st_ino}]\n")
                r = self.receive_and_describe(server.fileno(), strict="x")
                self.assertEqual(r.returncode, 1)
                self.assertIn("SKBOX_STRICT_STREAM_MODE='x'", r.stderr)
            finally:
                os.close(read_end)
                os.close(write_end)

    def test_errors(self):
        a, b = socket.socketpair()
        with a, b:
            cases = [
                ([], "required"),
                (["-s"], "-s needs an fd number"),
                (["3", "-s", "x"], "-s 'x': not an fd number"),
                (["-s", "x", "3"], "not an fd number"),
                (["-r", "3"], "-r needs a program"),
                (["-s", "0", "99"], "over fd 99"),
                (["-q", "3"], "unknown option"),
            ]
            for argv, message in cases:
                r = run([il.binary("send-receive-fd"), *argv])
                self.assertEqual(r.returncode, 1, argv)
                self.assertIn(message, r.stderr, argv)
            b.close()  # the sender goes away: ENOLINK, not a hang
            r = run(
                [il.binary("send-receive-fd"), "-r", str(a.fileno()), "true"], pass_fds=[a.fileno()]
            )
            self.assertEqual(r.returncode, 1)
            self.assertIn("receiving an fd", r.stderr)


class BindExec(unittest.TestCase):
    def setUp(self):
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="sbx-bind-exec-")
        self.path = os.path.join(self.dir, "a.sock")

    def tearDown(self):
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    def test_binds_socket_and_names_fd(self):
        script = "ls -l /proc/self/fd/$MY_FD; stat -c %a " + self.path + "; ls " + self.dir
        r = run([il.binary("socketbox-bind-exec"), self.path, "MY_FD", "sh", "-c", script])
        self.assertEqual(r.returncode, 0, r.stderr)
        link, mode, listing = r.stdout.split("\n")[:3]
        self.assertIn("socket:", link)
        self.assertEqual(mode, "660")
        self.assertEqual(listing, "a.sock")  # no temporary name left
        self.assertTrue(stat.S_ISSOCK(os.lstat(self.path).st_mode))

    def test_mode_option_and_errors(self):
        r = run(
            [
                il.binary("socketbox-bind-exec"),
                "-m",
                "0600",
                self.path,
                "V",
                "sh",
                "-c",
                "stat -c %a " + self.path,
            ]
        )
        self.assertEqual(r.stdout.strip(), "600")
        cases = [
            (["-m", "999", self.path, "V", "true"], "octal mode"),
            ([self.path, "1V", "true"], "variable name"),
            ([self.path, "V"], "required"),
            ([self.path, "V", "/nonexistent/prog"], "exec /nonexistent/prog"),
        ]
        for argv, message in cases:
            r = run([il.binary("socketbox-bind-exec"), *argv])
            self.assertNotEqual(r.returncode, 0, argv)
            self.assertIn(message, r.stderr, argv)
        with open(self.path + "x", "w"):
            pass
        r = run([il.binary("socketbox-bind-exec"), self.path + "x", "V", "true"])
        self.assertIn("not a socket", r.stderr)

    def test_listen_fds_mode_hands_fd_3_as_systemd_does(self):
        # fd 3 is taken in the launcher (as by any inherited file): -l puts
        # the socket there anyway, as systemd would.
        script = (
            'echo "$LISTEN_FDS $LISTEN_PID $$ $LISTEN_FDNAMES"; '
            "readlink /proc/self/fd/3; ls /proc/self/fd"
        )
        r = run(
            [
                "sh",
                "-c",
                'exec 3</dev/null; exec "$@"',
                "sh",
                il.binary("socketbox-bind-exec"),
                "-l",
                "-n",
                "web",
                self.path,
                "sh",
                "-c",
                script,
            ]
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        env_line, link, *fds = r.stdout.split("\n")
        fds_count, pid, shell_pid, names = env_line.split()
        self.assertEqual((fds_count, names), ("1", "web"))
        self.assertEqual(pid, shell_pid)  # LISTEN_PID is the program's own pid
        self.assertIn("socket:", link)
        # Only 0, 1, 2, 3 (and ls's own directory fd): the bound copy is closed.
        self.assertEqual(len([f for f in fds if f]), 5, fds)
        r = run([il.binary("socketbox-bind-exec"), "-l", "-n", "a:b", self.path, "true"])
        self.assertIn("-n needs a name", r.stderr)
        r = run([il.binary("socketbox-bind-exec"), "-l", self.path])
        self.assertIn("PATH and PROG are required", r.stderr)


if __name__ == "__main__":
    sbxtest.run_tap(SocketQuery, SendReceiveFd, BindExec)
