"""The preload's behaviour on real kernel sockets, with Debian's python3 as
the host program: getsockname on replaced listeners, options carried to
accepted sockets, accept4 flags, strict and stealth modes, the stream source
going away, connect interception, block-listen, the IPv4 and wildcard forms,
the fe8f:1:: link-local form, address-buffer protection, the yield counter,
threads and fork. The "daemon" here is the program's own code handing a
real TCP socket to the path with the "A" protocol."""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import unittest

import preload_common as pc
from preload_common import sbxtest

# Helpers every child program gets: make a connected loopback TCP pair and
# pass the server end to a datagram path, as the socketbox daemon does.
PRELUDE = r"""
import ctypes, errno, fcntl, os, socket, struct, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
def tcp_pair():
    l = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(l.getsockname())
    a, _ = l.accept()
    l.close()
    return c, a
def send_to(path, fd):
    tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    tx.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))], 0, path)
    tx.close()
def deliver(path):
    c, a = tcp_pair()
    send_to(path, a.fileno())
    a.close()
    return c
ROOT2 = os.environ.get("SKBOX_DIRECTORY_ROOT2", "")
P80 = os.path.join(ROOT2, "00000", "00001_00080")
"""


class BehaviourTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sbx-preload-beh-")
        for sub in ("00000", "X0000", "X0004", "X4001", "X4000"):
            os.makedirs(os.path.join(self.tmp, sub))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_child(self, body, ns=None, **env):
        env.setdefault("SKBOX_DIRECTORY_ROOT2", self.tmp)
        r = pc.run_under_preload(PRELUDE + body, env, ns=ns)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def test_getsockname_and_carried_options(self):
        out = self.run_child(
            r"""
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 42)       # before bind
s.bind(("fe8f::2:0:1", 80))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)         # after bind
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)    # listener-only
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.listen(16)
print("name", s.getsockname())
print("family", s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN))
c = deliver(P80)
conn, peer = s.accept()
print("peer", peer[0] == c.getsockname()[0] and peer[1] == c.getsockname()[1])
print("nodelay", conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
print("keepidle", conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))
print("keepalive", conn.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))
"""
        )
        self.assertIn("name ('fe8f::2:0:1', 80, 0, 0)", out)
        self.assertIn("family 1", out)  # it is an AF_UNIX socket underneath
        self.assertIn("peer True", out)
        self.assertIn("nodelay 1", out)
        self.assertIn("keepidle 42", out)
        self.assertIn("keepalive 1", out)

    def test_receiving_sockets_answer_getsockopt_as_tcp_listeners(self):
        # What sd_is_socket() asks before a socket-activated program accepts.
        out = self.run_child(
            r"""
ask = lambda s: [s.getsockopt(socket.SOL_SOCKET, o) for o in
                 (socket.SO_TYPE, socket.SO_ACCEPTCONN, socket.SO_DOMAIN, socket.SO_PROTOCOL)]
s = socket.socket(socket.AF_INET6)
s.bind(("fe8f::2:0:1", 80))
s.listen(5)
print(*ask(s))
u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # not a receiving socket
print(*ask(u))
print(len(s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE, 2)))  # at most the buffer
# The library's own checks still see the truth: an empty datagram is
# skipped (a stream would mean EOF), the next message is accepted.
tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
tx.sendto(b"", P80)
c = deliver(P80)
conn, peer = s.accept()
print(peer[1] == c.getsockname()[1])
"""
        )
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["1", "1", "10", "6"])  # STREAM, listening, INET6, TCP
        self.assertEqual(lines[1].split(), ["2", "0", "1", "0"])  # the real DGRAM AF_UNIX answer
        self.assertEqual(lines[2], "2")
        self.assertEqual(lines[3], "True")

    def test_listen_fds_socket_answers_and_accepts(self):
        # socketbox-bind-exec -l hands the socket as systemd would (fd 3,
        # LISTEN_FDS, LISTEN_PID); the library answers for it too.
        path = os.path.join(self.tmp, "handed.sock")
        code = (
            PRELUDE
            + r"""
s = socket.socket(fileno=3)  # Python asks SO_TYPE and SO_PROTOCOL (family: getsockname)
print(s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) == socket.AF_INET6,
      s.type == socket.SOCK_STREAM, s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
c = deliver(sys.argv[1])
conn, peer = s.accept()
print(peer[0], peer[1] == c.getsockname()[1])
"""
        )
        bind_exec = os.path.join(pc.BUILD, "inetd", "socketbox-bind-exec")
        env = {**os.environ, "LD_PRELOAD": pc.LIBRARY}
        r = subprocess.run(
            [bind_exec, "-l", path, pc.PYTHON, "-c", code, path],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.splitlines(), ["True True 1", "127.0.0.1 True"])
        # LISTEN_PID naming another process: fd 3 is not ours to dress up.
        r = subprocess.run(
            [
                bind_exec,
                path,
                "UNUSED",
                "sh",
                "-c",
                'exec 3>&$UNUSED; LISTEN_FDS=1 LISTEN_PID=1 exec "$@"',
                "sh",
                pc.PYTHON,
                "-c",
                "import socket; s = socket.socket(fileno=3); print(int(s.type))",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), str(int(socket.SOCK_DGRAM)))

    def test_closed_listener_fd_reused(self):
        # The preload does not see close(): a new socket that gets the same
        # fd number must not inherit what it knew about the old one.
        out = self.run_child(
            r"""
s = socket.socket(socket.AF_INET6)
s.bind(("fe8f::2:0:1", 80))
fd = s.fileno()
s.close()
os.unlink(P80)
t = socket.socket(socket.AF_INET6)
print("same_fd", t.fileno() == fd)
t.bind(("::1", 0))
print("name", t.getsockname()[0])
t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
print("nodelay", t.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
"""
        )
        self.assertIn("same_fd True", out)
        self.assertIn("name ::1", out)
        self.assertIn("nodelay 1", out)  # reached the real TCP socket

    def test_accept4_flags_and_nonblocking_listener(self):
        out = self.run_child(
            r"""
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
s.bind(("fe8f::2:0:1", 80))
print("listener_nonblock", bool(fcntl.fcntl(s.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK))
print("empty", libc.accept4(s.fileno(), None, None, 0), errno.errorcode[ctypes.get_errno()])
deliver(P80)
fd = libc.accept4(s.fileno(), None, None, socket.SOCK_NONBLOCK)
print("nonblock", bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK),
      "cloexec", bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC))
deliver(P80)
fd = libc.accept4(s.fileno(), None, None, socket.SOCK_CLOEXEC)
print("nonblock", bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK),
      "cloexec", bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC))
print("badflags", libc.accept4(s.fileno(), None, None, 0x40), errno.errorcode[ctypes.get_errno()])
"""
        )
        self.assertIn("listener_nonblock True", out)
        self.assertIn("empty -1 EAGAIN", out)
        self.assertIn("nonblock True cloexec False", out)
        self.assertIn("nonblock False cloexec True", out)
        self.assertIn("badflags -1 EINVAL", out)

    def test_strict_mode_and_stealth(self):
        body = r"""
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
if os.path.exists(os.path.join(ROOT2, "strict.sock")): os.unlink(os.path.join(ROOT2, "strict.sock"))
s.bind(os.path.join(ROOT2, "strict.sock"))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
send_to(os.path.join(ROOT2, "strict.sock"), u.fileno())     # not a stream
x, y = socket.socketpair()
send_to(os.path.join(ROOT2, "strict.sock"), y.fileno())
conn, peer = s.accept()
# (Python labels accepted sockets with the listener's type: ask the kernel.)
kind = conn.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
print("type", kind == socket.SOCK_STREAM and "stream" or "other", "peer", peer)
"""
        out = self.run_child(body, SKBOX_STEALTH_MODE=1)
        self.assertIn("type stream peer ('::1', 0, 0, 0)", out)
        out = self.run_child(body, SKBOX_STRICT_STREAM_MODE=0)
        self.assertIn("type other", out)  # level 0 takes the UDP socket

    def test_strict_mode_takes_only_connections(self):
        # A listening or unconnected stream socket is no connection: levels 1
        # and 2 close it and wait for the next message, so accept() returns
        # the real connection sent after them.
        body = r"""
path, lpath = os.path.join(ROOT2, "conn.sock"), os.path.join(ROOT2, "l.sock")
for p in (path, lpath):
    if os.path.exists(p): os.unlink(p)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
tcp_listener = socket.create_server(("127.0.0.1", 0))
unix_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
unix_listener.bind(lpath); unix_listener.listen()
unconnected = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
unix_unconnected = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
for sock in (tcp_listener, unix_listener, unconnected, unix_unconnected):
    send_to(path, sock.fileno())
c = deliver(path)
conn, peer = s.accept()
listening = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
print("first", "listener" if listening else "connection", conn.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN))
if not listening:
    conn.sendall(b"real"); print("client got", c.recv(16))
"""
        for level in ("1", "2"):
            out = self.run_child(body, SKBOX_STRICT_STREAM_MODE=level)
            self.assertIn(f"first connection {int(socket.AF_INET)}", out, level)
            self.assertIn("client got b'real'", out, level)
        out = self.run_child(body, SKBOX_STRICT_STREAM_MODE="0")
        self.assertIn("first listener", out)  # level 0 takes whatever comes

    def test_sender_uids_refuse_injected_sockets(self):
        # The socket file is writable by everyone (a permissive deployment):
        # SKBOX_SENDER_UIDS is then what keeps other users from injecting.
        body = r"""
s = socket.socket(socket.AF_INET6)
s.bind(("fe8f::2:0:1", 80)); s.listen()
os.chmod(P80, 0o666); os.chmod(ROOT2, 0o711); os.chmod(os.path.dirname(P80), 0o711)
mine, theirs = tcp_pair()
pid = os.fork()
if pid == 0:
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    send_to(P80, theirs.fileno()); os._exit(0)
print("injector", os.waitpid(pid, 0)[1])
theirs.close()
c = deliver(P80)
c.settimeout(5); mine.settimeout(5)
s.setblocking(False)
try:
    conn, _ = s.accept()
    conn.sendall(b"served"); conn.close()
except BlockingIOError:
    print("nothing accepted")
for name, sock in (("real", c), ("injected", mine)):
    try: print(name, sock.recv(16))
    except socket.timeout: print(name, "timeout")
"""
        out = self.run_child(body, SKBOX_SENDER_UIDS="0")
        self.assertIn("injector 0", out)
        self.assertIn("real b'served'", out)
        self.assertIn("injected b''", out)  # closed unread
        r = pc.run_under_preload(
            PRELUDE + body, {"SKBOX_DIRECTORY_ROOT2": self.tmp, "SKBOX_SENDER_UIDS": "root"}
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('SKBOX_SENDER_UIDS="root" is malformed', r.stderr)
        self.assertIn("nothing accepted", r.stdout)  # fails closed: both refused
        self.assertIn("real b''", r.stdout)
        # A receiving socket the program bound itself gets SO_PASSCRED at its
        # first accept(); what arrives after that is checked the same way.
        own = r"""
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(os.path.join(ROOT2, "own.sock")); s.setblocking(False)
try: s.accept()
except BlockingIOError: print("empty")
c = deliver(os.path.join(ROOT2, "own.sock"))
conn, _ = s.accept(); conn.sendall(b"own"); conn.close()
print("got", c.recv(16))
"""
        out = self.run_child(own, SKBOX_SENDER_UIDS="0")
        self.assertIn("empty", out)
        self.assertIn("got b'own'", out)

    def test_vanished_stream_source_is_enolink_not_sigterm(self):
        out = self.run_child(
            r"""
a, b = socket.socketpair()
x, y = socket.socketpair()
send_to_stream = lambda fd: b.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
send_to_stream(y.fileno())
conn, _ = a.accept()
print("first", conn.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM)
b.close()
try:
    a.accept()
except OSError as e:
    print("error", errno.errorcode[e.errno])
print("alive")
""",
            SKBOX_ACCEPT_STREAM=1,
        )
        self.assertIn("first True", out)
        self.assertIn("error ENOLINK", out)
        self.assertIn("alive", out)

    def test_connect_interception(self):
        body = r"""
# X=3: a stream target; X=2: a datagram ("A") target.
for p in ("00000/00001_08080", "00000/00002_08080", "X4000/00001_08080"):
    if os.path.exists(os.path.join(ROOT2, p)): os.unlink(os.path.join(ROOT2, p))
st = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
st.bind(os.path.join(ROOT2, "00000", "00001_08080")); st.listen(4)
dg = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
dg.bind(os.path.join(ROOT2, "00000", "00002_08080"))
c = socket.socket(socket.AF_INET6)
c.connect(("fe8f::3:0:1", 8080)); c.sendall(b"to-stream")
a, _ = st.accept(); print("stream", a.recv(64))
c = socket.socket(socket.AF_INET6)
try:
    c.connect(("fe8f::2:0:2", 8080)); c.sendall(b"to-dgram")
    msg, anc, _, _ = dg.recvmsg(16, socket.CMSG_SPACE(4))
    fd = struct.unpack("i", anc[0][2][:4])[0]
    print("dgram", socket.socket(fileno=fd).recv(64))
except OSError as e:
    print("dgram", errno.errorcode[e.errno])
st4 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
st4.bind(os.path.join(ROOT2, "X4000", "00001_08080")); st4.listen(4)
c = socket.socket(socket.AF_INET)
try:
    c.connect(("127.181.0.1", 8080)); c.sendall(b"to-ipv4")
    a, _ = st4.accept(); print("ipv4", a.recv(64))
except OSError as e:
    print("ipv4", errno.errorcode[e.errno])
"""
        out = self.run_child(body, SKBOX_ENABLE_CONNECT="b2")
        self.assertIn("stream b'to-stream'", out)
        self.assertIn("dgram b'to-dgram'", out)
        self.assertIn("ipv4 b'to-ipv4'", out)
        out = self.run_child(body, SKBOX_ENABLE_CONNECT="1")
        self.assertIn("stream b'to-stream'", out)
        self.assertIn("dgram EINVAL", out)  # datagram targets need level 2
        self.assertIn("ipv4 ECONNREFUSED", out)  # no 'b': a real connect

    def test_block_listen(self):
        body = r"""
s = socket.socket(socket.AF_INET6)
try:
    s.listen(); print("listen", "OK")
except OSError as e:
    print("listen", errno.errorcode[e.errno])
"""
        self.assertIn("listen EINVAL", self.run_child(body))
        self.assertIn("listen OK", self.run_child(body, SKBOX_BLOCK_LISTEN_EMPTY_ADDR=0))

    def test_ipv4_and_wildcard_forms(self):
        out = self.run_child(
            r"""
for fam, host, port, path in [
        (socket.AF_INET, "127.180.1.2", 80, "X4001/00002_00080"),
        (socket.AF_INET, "0.0.0.0", 81, "X0004/00000_00081"),
        (socket.AF_INET6, "::", 82, "X0000/00000_00082"),
        (socket.AF_INET6, "::ffff:127.180.1.3", 83, "X4001/00003_00083")]:
    s = socket.socket(fam)
    s.bind((host, port)); s.listen()
    print(path, os.path.exists(os.path.join(ROOT2, path)), s.getsockname()[0])
""",
            SKBOX_PORT_FILTER_IPV4="1024",
            SKBOX_PORT_FILTER_IPV4_WILDCARD="0,0,81",
            SKBOX_PORT_FILTER_IPV6_WILDCARD="0,0,82",
        )
        self.assertIn("X4001/00002_00080 True 127.180.1.2", out)
        self.assertIn("X0004/00000_00081 True 0.0.0.0", out)
        self.assertIn("X0000/00000_00082 True ::", out)
        self.assertIn("X4001/00003_00083 True ::ffff:127.180.1.3", out)

    def test_link_local_form(self):
        with sbxtest.Topology() as topo:
            topo.ns_sh(
                topo.server, "ip", "link", "add", "sbxd0", "type", "veth", "peer", "name", "sbxd1"
            )
            topo.ns_sh(topo.server, "ip", "link", "set", "sbxd0", "up")
            topo.ns_sh(topo.server, "ip", "link", "set", "sbxd1", "up")
            topo.ns_sh(topo.server, "ip", "addr", "add", "fe80::1234/64", "dev", "sbxd0", "nodad")
            index = topo.ns_sh(topo.server, "cat", "/sys/class/net/sbxd0/ifindex").stdout.strip()
            out = self.run_child(
                rf"""
s = socket.socket(socket.AF_INET6)
s.bind(("fe8f:1:0:{int(index):x}::1234", 8080)); s.listen()
print("bound", s.getsockname())
""",
                ns=topo.server,
            )
            # The real bind went to fe80::1234 with the scope id from the address.
            self.assertRegex(out, rf"bound \('fe80::1234(%sbxd0)?', 8080, 0, {index}\)")

    def test_address_buffer_protection(self):
        body = r"""
s = socket.socket(socket.AF_INET)
s.bind(("127.0.0.1", 0))
buf = ctypes.create_string_buffer(b"\xff" * 128, 128)
n = ctypes.c_uint32(128)
libc.getsockname(s.fileno(), buf, ctypes.byref(n))
print("len", n.value, "tail", buf.raw[16:].count(b"\0"))
"""
        self.assertIn("len 16 tail 112", self.run_child(body))
        self.assertIn("len 16 tail 0", self.run_child(body, SKBOX_GETPEERNAME_PROTECTION=0))
        self.assertIn("len 16 tail 0", self.run_child(body, SKBOX_GETPEERNAME_PROTECTION=1))

    def test_yield_counter(self):
        if not shutil.which("strace"):
            self.skipTest("strace not installed")
        body = r"""
s = socket.socket(socket.AF_INET6)
s.bind(("fe8f::2:0:1", 80)); s.listen()
for _ in range(8):
    deliver(P80); s.accept()[0].close()
"""
        counts = {}
        for value in ("0", "1"):
            trace = os.path.join(self.tmp, f"trace{value}")
            env = {
                **os.environ,
                "LD_PRELOAD": pc.LIBRARY,
                "SKBOX_DIRECTORY_ROOT2": self.tmp,
                "SKBOX_SCHED_YIELD": value,
            }
            subprocess.run(
                [
                    "strace",
                    "-f",
                    "-qq",
                    "-e",
                    "trace=sched_yield",
                    "-o",
                    trace,
                    pc.PYTHON,
                    "-c",
                    PRELUDE + body,
                ],
                env=env,
                check=True,
                timeout=60,
            )
            with open(trace) as f:
                counts[value] = len(re.findall(r"sched_yield\(", f.read()))
        self.assertEqual(counts, {"0": 0, "1": 2})  # accepts 1 and 8 of 8: every 7th

    def test_threads_and_fork(self):
        out = self.run_child(
            r"""
s = socket.socket(socket.AF_INET6)
s.bind(("fe8f::2:0:1", 80)); s.listen()
pid = os.fork()
if pid == 0:
    # The child inherits the replaced listener and what the preload knows.
    conn, _ = s.accept(); conn.sendall(b"child"); conn.close()
    os._exit(0 if s.getsockname()[0] == "fe8f::2:0:1" else 3)
c = deliver(P80)
print("from", c.recv(16))
print("child", os.waitpid(pid, 0)[1])
seen = []
lock = threading.Lock()
def worker():
    for _ in range(10):
        conn, _ = s.accept()
        with lock:
            seen.append(conn.recv(8))
        conn.close()
threads = [threading.Thread(target=worker) for _ in range(4)]
for t in threads: t.start()
clients = []
for i in range(40):
    c = deliver(P80); c.sendall(b"%03d" % i); clients.append(c)
for t in threads: t.join(30)
print("served", len(seen), len(set(seen)))
"""
        )
        self.assertIn("from b'child'", out)
        self.assertIn("child 0", out)
        self.assertIn("served 40 40", out)


WRAPPER = os.path.join(pc.BUILD, "preload", "run-with-socketbox")
SHOW = "import os; print(os.environ.get('LD_PRELOAD'), os.environ.get('SKBOX_DIRECTORY_ROOT'))"


class WrapperTest(unittest.TestCase):
    """run-with-socketbox: finds the library, sets the variables, execs."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sbx-preload-wrap-")
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "SKBOX_DIRECTORY_ROOT", "SKBOX_PRELOAD_LIBRARY")
        }

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_wrapper(self, wrapper, *argv, **env):
        return subprocess.run(
            [wrapper, *argv], env={**self.env, **env}, capture_output=True, text=True, timeout=30
        )

    def test_build_tree_library_and_default_root(self):
        r = self.run_wrapper(WRAPPER, pc.PYTHON, "-c", SHOW)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), [os.path.realpath(pc.LIBRARY), "/run/socketbox-conf"])
        # The program really runs under the library: a record-file bind works.
        with open(os.path.join(self.tmp, "skbox_dir_00000"), "wb") as f:
            f.write(os.path.join(self.tmp, "s.sock").encode().ljust(128, b"\0"))
        r = self.run_wrapper(
            WRAPPER,
            pc.PYTHON,
            "-c",
            "import socket; socket.socket(socket.AF_INET6).bind(('fe8f::', 80))",
            SKBOX_DIRECTORY_ROOT=self.tmp,
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(os.path.join(self.tmp, "s.sock")))

    def test_install_layout_and_existing_preloads_kept(self):
        bindir = os.path.join(self.tmp, "usr", "bin")
        libdir = os.path.join(
            os.path.realpath(self.tmp), "usr", "lib", "x86_64-linux-gnu", "socketbox"
        )
        os.makedirs(bindir)
        os.makedirs(libdir)
        shutil.copy2(WRAPPER, bindir)
        shutil.copy2(pc.LIBRARY, libdir)
        r = self.run_wrapper(
            os.path.join(bindir, "run-with-socketbox"),
            pc.PYTHON,
            "-c",
            SHOW,
            LD_PRELOAD="libc.so.6",
            SKBOX_DIRECTORY_ROOT="/srv/sb",
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(
            r.stdout.split(),
            [os.path.join(libdir, "libsocketbox-preload.so"), "libc.so.6", "/srv/sb"],
        )

    def test_errors(self):
        r = self.run_wrapper(WRAPPER)
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage", r.stderr)
        r = self.run_wrapper(WRAPPER, "true", SKBOX_PRELOAD_LIBRARY="/nonexistent/lib.so")
        self.assertEqual(r.returncode, 127)
        self.assertIn("cannot find", r.stderr)
        lonely = os.path.join(self.tmp, "bin")
        os.makedirs(lonely)
        shutil.copy2(WRAPPER, lonely)
        r = self.run_wrapper(os.path.join(lonely, "run-with-socketbox"), "true")
        with open(WRAPPER) as f:
            configured = re.search(r'"(/[^"]*libsocketbox-preload\.so)"', f.read()).group(1)
        if not os.path.exists(configured):  # else it rightly finds the installed one
            self.assertEqual(r.returncode, 127, r.stderr)
            self.assertIn("SKBOX_PRELOAD_LIBRARY", r.stderr)


if __name__ == "__main__":
    sbxtest.run_tap(BehaviourTest, WrapperTest, skip_reason=pc.skip_reason())
