"""Kernel dispatch under libsocketbox-preload.so (docs/preload.md, "Kernel
dispatch"): the server's fd becomes the engine's TCP listener at bind, its
accept() is the kernel's own, and what still comes over the datagram socket
is served from the same fd and wakes the same epoll/poll.

Two engines:
- FakeEngineTest: a stand-in for the engine's listener socket in this test
  process (answers a request with a TCP listener on [::]:0, or a refusal).
  It needs no privileges and proves the library's side exactly: the fd is
  that listener, steered connections (made straight to the listener) and
  connections sent over the datagram socket are all served, by an epoll
  server, a poll server (python3 -m http.server), a blocking accept loop and
  Node.js's cluster with scheduling policy "none".
- EngineTest: the real daemon with --kernel-dispatch on in a network
  namespace (root and BPF sk_lookup; skipped otherwise, saying why): the
  daemon's counters show every connection steered by the kernel and none
  accepted by the engine; with --kernel-dispatch off it is as before."""
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import preload_common as pc
from preload_common import sbxtest

sys.path.insert(0, os.path.join(sbxtest.ROOT, "tests", "engine"))
from engine_fixture import Engine, write  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NODE = shutil.which("node")

# Answers each connection with the peer it saw, then closes; watches the
# listener with epoll (selectors), non-blocking, as event loops do. Prints
# what the program sees of its listener first.
EPOLL_SERVER = r"""
import selectors, socket, sys
s = socket.create_server((sys.argv[1], 80), family=socket.AF_INET6)
o = lambda name: s.getsockopt(socket.SOL_SOCKET, name)
print("fd", s.fileno(), "name", s.getsockname(), "acceptconn", o(socket.SO_ACCEPTCONN),
      "type", o(socket.SO_TYPE), "domain", o(socket.SO_DOMAIN), flush=True)
s.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(s, selectors.EVENT_READ)
print("selector", type(sel).__name__, flush=True)
while True:
    for key, _ in sel.select():
        while True:
            try:
                conn, peer = s.accept()
            except BlockingIOError:
                break
            conn.setblocking(True)
            with conn:
                conn.recv(1024)
                conn.sendall(f"peer={peer[0]}\n".encode())
"""

# The same with a blocking accept() in one thread.
BLOCKING_SERVER = r"""
import socket, sys
s = socket.create_server((sys.argv[1], 80), family=socket.AF_INET6)
print("fd", s.fileno(), flush=True)
while True:
    conn, peer = s.accept()
    with conn:
        conn.recv(1024)
        conn.sendall(f"peer={peer[0]}\n".encode())
"""

NODE_CLUSTER = r"""
const cluster = require('cluster');
const http = require('http');
if (cluster.isPrimary) {
  for (let i = 0; i < 2; i++) cluster.fork();
  cluster.on('listening', (w, a) => console.log(`listening ${w.process.pid} ${JSON.stringify(a)}`));
} else {
  http.createServer((req, res) => {
    res.end(`pid=${process.pid} peer=${req.socket.remoteAddress} ` +
            `address=${JSON.stringify(req.socket.server.address())}\n`);
  }).listen(80, process.argv[2]);
}
"""

NODE_SERVER = r"""
const http = require('http');
const server = http.createServer((req, res) => res.end(`peer=${req.socket.remoteAddress}\n`));
server.listen(80, process.argv[2], () => console.log('address ' + JSON.stringify(server.address())));
"""

REQUEST = b"GET / HTTP/1.0\r\nHost: test\r\n\r\n"


def read_all(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data.decode(errors="replace")
        data += chunk


def socket_inode(pid, fd):
    """The inode of socket `fd` of process `pid` (None if not a socket)."""
    m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
    return int(m.group(1)) if m else None


def fds_of_inode(pid, inode):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if socket_inode(pid, int(fd)) == inode:
                out.append(int(fd))
        except OSError:
            pass
    return out


def unix_socket_inode(path):
    """The inode of the Unix socket bound at `path` (/proc/net/unix)."""
    with open("/proc/net/unix") as f:
        for line in f:
            words = line.split()
            if len(words) >= 8 and words[7] == path:
                return int(words[6])
    return None


def send_over_datagram(path, peer_host="127.0.0.1"):
    """A connected loopback TCP pair; the server end goes to the datagram
    socket at `path` by the "A" protocol, as the engine sends a connection
    it accepted itself. Returns the client end."""
    family = socket.AF_INET6 if ":" in peer_host else socket.AF_INET
    l = socket.create_server((peer_host, 0), family=family)
    c = socket.create_connection(l.getsockname()[:2], timeout=10)
    a, _ = l.accept()
    l.close()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx:
        sbxtest.send_fd(tx, a.fileno(), path)
    a.close()
    return c


def ask(c):
    c.settimeout(10)
    c.sendall(REQUEST)
    try:
        return read_all(c)
    finally:
        c.close()


class FakeEngine:
    """The engine's listener socket (engine/core/listener_request.h): takes
    each request's fds, answers `status` and, if 0, one TCP listener on
    [::]:0 (dual-stack, as the engine binds its listeners); keeps every
    channel open."""

    def __init__(self, path, status=0):
        self.path, self.status = path, status
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.listener = socket.create_server(("::", 0), family=socket.AF_INET6,
                                             dualstack_ipv6=True)
        self.port = self.listener.getsockname()[1]
        self.inode = os.fstat(self.listener.fileno()).st_ino
        self.requests = []
        self.channels = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(self.sock, 256, 4)
            except OSError:
                return
            if len(fds) != 2 or msg[:6] != b"SBXR\x03\x01":
                for fd in fds:
                    os.close(fd)
                continue
            self.requests.append(msg[16:].decode(errors="replace"))
            os.close(fds[0])
            channel = socket.socket(fileno=fds[1])
            answer = b"SBXR\x04\x01\0\0" + struct.pack(">I", self.status) + b"\0" * 4
            if self.status == 0:
                socket.send_fds(channel, [answer], [self.listener.fileno()])
            else:
                channel.send(answer)
            self.channels.append(channel)

    def steered(self):
        """A connection straight into the listener: what the kernel does."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def close(self):
        self.sock.close()
        self.listener.close()
        for c in self.channels:
            c.close()


class FakeEngineTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sbx-preload-kd-")
        self.root2 = os.path.join(self.tmp, "sb2")
        os.makedirs(os.path.join(self.root2, "00000"))
        self.backend = pc.directory2_path(self.root2, 0, 1, 80)
        self.engine_path = os.path.join(self.tmp, "listeners.sock")
        self.procs = []
        self.engine = None

    def tearDown(self):
        for p in self.procs:
            sbxtest.stop(p)
        if self.engine:
            self.engine.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, argv, **env):
        full = {"LD_PRELOAD": pc.LIBRARY, "SKBOX_DIRECTORY_ROOT2": self.root2,
                "SKBOX_LISTENER_SOCKET": self.engine_path}
        full.update({k: str(v) for k, v in env.items()})
        p = sbxtest.spawn(argv, env=full, stdout=subprocess.PIPE, cwd=self.tmp)
        self.procs.append(p)
        return p

    def first_line(self, p, prefix):
        line = p.stdout.readline().decode()
        if not line.startswith(prefix):
            sbxtest.stop(p)
            self.fail(f"expected {prefix!r}, got {line!r}: {p.stderr.read().decode()}")
        return line

    def assert_is_the_listener(self, pid, fd):
        self.assertEqual(socket_inode(pid, fd), self.engine.inode,
                         f"fd {fd} of {pid} is not the engine's listener")

    def serve_both_ways(self, count=4, expect=None):
        """`count` steered connections and `count` over the datagram socket,
        interleaved: each answered (no connection lost or left waiting)."""
        for i in range(count):
            for how, make in (("steered", self.engine.steered),
                              ("datagram", lambda: send_over_datagram(self.backend))):
                answer = ask(make())
                self.assertIn(expect or "peer=", answer, f"{how} connection {i}")

    def test_epoll_server_serves_the_listener_and_the_datagram_socket(self):
        self.engine = FakeEngine(self.engine_path)
        p = self.start([pc.PYTHON, "-c", EPOLL_SERVER, pc.FE8F_DIR2])
        line = self.first_line(p, "fd ")
        fd = int(line.split()[1])
        self.assertIn("name ('fe8f::2:0:1', 80, 0, 0) acceptconn 1 type 1 domain 10", line)
        self.assertIn("EpollSelector", self.first_line(p, "selector"))
        self.assert_is_the_listener(p.pid, fd)
        # The datagram socket is kept (another fd), the backend path still bound.
        self.assertEqual(self.engine.requests, [self.backend])
        self.assertTrue(os.path.exists(self.backend))
        # Connections over the datagram socket wake the epoll (the receiving
        # socket is registered with it alongside the listener).
        self.serve_both_ways(expect="127.0.0.1\n")

    def test_poll_server_python_http_server(self):
        # socketserver waits in poll(): the receiving socket is polled too.
        self.engine = FakeEngine(self.engine_path)
        p = self.start([pc.PYTHON, "-u", "-m", "http.server", "--bind", pc.FE8F_DIR2, "80"])
        sbxtest.wait_for(lambda: os.path.exists(self.backend), what="backend socket")
        sbxtest.wait_for(lambda: self.engine.requests, what="a listener request")
        ask(self.engine.steered())  # it serves: it is listening
        fds = fds_of_inode(p.pid, self.engine.inode)
        self.assertEqual(len(fds), 1, fds)
        self.serve_both_ways(expect="200 OK")

    def test_blocking_accept_loop(self):
        self.engine = FakeEngine(self.engine_path)
        p = self.start([pc.PYTHON, "-c", BLOCKING_SERVER, pc.FE8F_DIR2])
        fd = int(self.first_line(p, "fd ").split()[1])
        self.assert_is_the_listener(p.pid, fd)
        # A datagram arrival wakes the blocked accept (it waits on both).
        self.serve_both_ways()

    def test_refused_or_no_engine_keeps_the_datagram_socket_and_says_so_once(self):
        errno_eopnotsupp = 95
        for case in ("refused", "absent", "off"):
            with self.subTest(case):
                for p in self.procs:
                    sbxtest.stop(p)
                self.procs = []
                if os.path.exists(self.engine_path):
                    os.unlink(self.engine_path)
                self.engine = FakeEngine(self.engine_path, status=errno_eopnotsupp) \
                    if case != "absent" else None
                env = {"SKBOX_KERNEL_DISPATCH": "0"} if case == "off" else {}
                p = self.start([pc.PYTHON, "-c", BLOCKING_SERVER, pc.FE8F_DIR2], **env)
                fd = int(self.first_line(p, "fd ").split()[1])
                # Still the datagram socket bound at the backend's path.
                self.assertEqual(socket_inode(p.pid, fd), unix_socket_inode(self.backend))
                for _ in range(3):
                    self.assertIn("peer=", ask(send_over_datagram(self.backend)))
                sbxtest.stop(p)
                lines = [l for l in p.stderr.read().decode().splitlines()
                         if l.startswith("socketbox-preload[")]
                if case == "off":
                    self.assertEqual(lines, [])
                    self.assertEqual(self.engine.requests, [])
                else:
                    self.assertEqual(len(lines), 1, lines)
                    self.assertIn("kernel dispatch not used", lines[0])
                    why = "does not steer" if case == "refused" else "no engine answers"
                    self.assertIn(why, lines[0])
                    self.assertIn(self.engine_path, lines[0])
                if self.engine:
                    self.engine.close()
                    self.engine = None

    def test_node_server_wakes_for_the_datagram_socket(self):
        # libuv's epoll: the receiving socket is registered with the listener.
        if not NODE:
            self.skipTest("no node installed")
        self.engine = FakeEngine(self.engine_path)
        script = write(os.path.join(self.tmp, "server.js"), NODE_SERVER)
        p = self.start([NODE, script, pc.FE8F_DIR2])
        self.first_line(p, "address ")
        self.assertEqual(len(fds_of_inode(p.pid, self.engine.inode)), 1)
        self.serve_both_ways(expect="peer=")

    def test_node_cluster_scheduling_policy_none(self):
        # The primary only binds (the preload takes the listener then) and
        # hands the fd to its workers, which listen and accept on it.
        if not NODE:
            self.skipTest("no node installed")
        self.engine = FakeEngine(self.engine_path)
        script = os.path.join(self.tmp, "cluster.js")
        write(script, NODE_CLUSTER)
        p = self.start([NODE, script, pc.FE8F_DIR2], NODE_CLUSTER_SCHED_POLICY="none")
        workers = set()
        for _ in range(2):
            line = self.first_line(p, "listening ")
            # The workers' server.address() is what the primary bound.
            self.assertIn('{"addressType":6,"address":"fe8f::2:0:1","port":80}', line)
            workers.add(int(line.split()[1]))
        for w in workers:
            self.assertEqual(len(fds_of_inode(w, self.engine.inode)), 1, f"worker {w}")
        pids = set()
        for _ in range(12):
            answer = ask(self.engine.steered())
            self.assertIn('address={"address":"fe8f::2:0:1","family":"IPv6","port":80}', answer)
            pids.add(int(re.search(r"pid=(\d+)", answer).group(1)))
        self.assertLessEqual(pids, workers)


# --- the real daemon ---------------------------------------------------------

def kernel_stats(engine):
    """The 'stats kernel' counters (SIGUSR1)."""
    import signal
    with engine.lock:
        start = len(engine.lines)
    engine.proc.send_signal(signal.SIGUSR1)
    sbxtest.wait_for(lambda: any(l.startswith("stats kernel") for l in engine.lines[start:]),
                     timeout=5, what="kernel stats")
    with engine.lock:
        lines = engine.lines[start:]
    out = {}
    for line in lines:
        if line.startswith("stats kernel"):
            out.update({k: int(v) for k, v in (w.split("=") for w in line.split()[2:])})
    return out


class EngineTest(unittest.TestCase):
    """The daemon in the server namespace with a configuration sending
    everything for [2001:db8:1::]/64 port 80 to the server's path; the server
    under the preload there too; clients in the client namespace."""

    def setUp(self):
        reason = sbxtest.require_root_and_netns()
        if reason:
            self.skipTest(reason)
        self.topo = sbxtest.Topology().__enter__()
        self.env = pc.preload_env(self.topo, SKBOX_LISTENER_SOCKET=self.topo.path("listeners.sock"))
        self.backend = pc.directory2_path(self.env["SKBOX_DIRECTORY_ROOT2"], 0, 1, 80)
        self.conf = write(self.topo.path("socketbox.conf"), f"""max-rules:1
rule-set:0 size:2
ip:2001:db8:1::/64 port:80 jump-unix:{self.backend}
default fail
""")
        self.engine = None
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            sbxtest.stop(p)
        if self.engine:
            self.engine.stop()
        self.topo.close()

    def start_engine(self, mode):
        args = ["-f", self.conf, "-l", "::", "-p", "80", "--threads", "1",
                "--kernel-dispatch", mode, "--listener-socket", self.env["SKBOX_LISTENER_SOCKET"]]
        try:
            self.engine = Engine(args, ns=self.topo.server)
        except AssertionError as e:
            if mode == "on" and "load the kernel dispatch program" in str(e):
                self.skipTest(f"the kernel cannot run the steering program: {str(e)[-300:]}")
            raise
        return self.engine

    def start_server(self, argv, **env):
        p = self.topo.spawn_server(argv, env={**self.env, **env}, stdout=subprocess.PIPE)
        self.procs.append(p)
        pc.wait_for_path(self.backend, p)
        return p

    def listening_processes(self):
        """pid -> fds of the TCP listeners on the engine's steering port(s)
        other than port 80 (ss -ltnp in the server namespace)."""
        out = self.topo.ns_sh(self.topo.server, "ss", "-Hltnp").stdout
        found = {}
        for line in out.splitlines():
            if re.search(r":80\s", line):
                continue
            for pid, fd in re.findall(r"pid=(\d+),fd=(\d+)", line):
                found.setdefault(int(pid), []).append(int(fd))
        return found

    def get_many(self, count, want):
        for i in range(count):
            status, _, body = pc.http_get_eventually(self.topo, pc.PUBLIC6)
            self.assertEqual(status, 200, f"request {i}")
            self.assertIn(want, body, f"request {i}")

    def test_http_server_gets_its_connections_from_the_kernel(self):
        eng = self.start_engine("on")
        self.assertIn("kernel dispatch on", eng.output())
        p = self.start_server([pc.PYTHON, "-m", "http.server", "--bind", pc.FE8F_DIR2,
                               "--directory", self.topo.tmp, "80"])
        sbxtest.wait_for(lambda: kernel_stats(eng).get("listeners.granted", 0) == 1,
                         what="the listener granted")
        # The server's own fd is a TCP listener (the engine's steering one).
        self.assertIn(p.pid, self.listening_processes())
        self.get_many(20, "Directory listing")
        # Connections sent over the datagram socket (as the engine does with
        # what it accepts itself) are served too: poll() wakes for them.
        for _ in range(3):
            self.assertIn("200 OK", ask(send_over_datagram(self.backend, "::1")))
        ks, st = kernel_stats(eng), eng.stats()
        self.assertEqual(ks["steered"], 20)
        self.assertEqual(st.get("accepted", 0), 0)  # the engine accepted none
        log = self.server_log(p)
        self.assertEqual(log.count(f"{pc.CLIENT6} - - "), 20, log)

    def server_log(self, p):
        sbxtest.stop(p)
        return p.stderr.read().decode(errors="replace")

    def test_kernel_dispatch_off_is_as_before(self):
        eng = self.start_engine("off")
        p = self.start_server([pc.PYTHON, "-m", "http.server", "--bind", pc.FE8F_DIR2,
                               "--directory", self.topo.tmp, "80"])
        self.get_many(10, "Directory listing")
        self.assertNotIn(p.pid, self.listening_processes())
        st = eng.stats()
        self.assertEqual(st["accepted"], 10)
        self.assertEqual(st["dispatched"], 10)
        log = self.server_log(p)
        lines = [l for l in log.splitlines() if l.startswith("socketbox-preload[")]
        self.assertEqual(len(lines), 1, log)
        self.assertIn("kernel dispatch not used", lines[0])
        self.assertEqual(log.count(f"{pc.CLIENT6} - - "), 10, log)

    def test_nginx_workers_share_the_listener(self):
        if not os.path.exists(NGINX):
            self.skipTest("nginx not installed")
        import preload_nginx_test as nt
        eng = self.start_engine("on")
        conf = write(self.topo.path("nginx.conf"),
                     nt.CONFIG.format(tmp=self.topo.tmp, listen=f"[{pc.FE8F_DIR2}]:80"))
        p = self.start_server([NGINX, "-c", conf])
        sbxtest.wait_for(lambda: len(self.listening_processes()) >= 3, what="nginx workers")
        self.get_many(30, f"remote={pc.CLIENT6} ")
        for _ in range(3):
            self.assertIn("200 OK", ask(send_over_datagram(self.backend, "::1")))
        ks, st = kernel_stats(eng), eng.stats()
        self.assertEqual(ks["steered"], 30)
        self.assertEqual(st.get("accepted", 0), 0)
        self.assertEqual(sbxtest.stop(p, timeout=10), 0)

    def test_nginx_binary_upgrade_keeps_the_listener_attended(self):
        # USR2 execs a new master with the listening fds; the channel and the
        # datagram socket go along (the fd is not close-on-exec), so after the
        # old master quits the engine still steers to the same listener.
        if not os.path.exists(NGINX):
            self.skipTest("nginx not installed")
        import signal
        import preload_nginx_test as nt
        eng = self.start_engine("on")
        # Daemonized: nginx ignores USR2 while the process that started it
        # runs. The new binary gets only the environment `env` names.
        conf = write(self.topo.path("nginx.conf"),
                     nt.CONFIG.format(tmp=self.topo.tmp, listen=f"[{pc.FE8F_DIR2}]:80")
                     .replace("daemon off;", "daemon on;\nenv LD_PRELOAD;\nenv SKBOX_DIRECTORY_ROOT2;\n"
                              "env SKBOX_LISTENER_SOCKET;"))
        pid_file = self.topo.path("nginx.pid")
        masters = []
        try:
            starter = self.topo.spawn_server([NGINX, "-c", conf], env=self.env)
            self.assertEqual(starter.wait(timeout=10), 0, starter.stderr.read())
            sbxtest.wait_for(lambda: os.path.exists(pid_file), what="nginx's pid file")
            masters.append(int(open(pid_file).read()))
            self.get_many(5, f"remote={pc.CLIENT6} ")
            os.kill(masters[0], signal.SIGUSR2)
            try:
                sbxtest.wait_for(lambda: os.path.exists(pid_file + ".oldbin") and
                                 os.path.exists(pid_file), what="nginx's new master")
            except AssertionError:
                raise AssertionError(open(self.topo.path("error.log")).read()[-2000:])
            masters.append(int(open(pid_file).read()))
            os.kill(masters[0], signal.SIGQUIT)
            sbxtest.wait_for(lambda: not os.path.exists(f"/proc/{masters[0]}"),
                             what="the old master gone")
            sbxtest.wait_for(lambda: set(self.listening_processes()) - {masters[1]},
                             what="the new workers")
            self.get_many(10, f"remote={pc.CLIENT6} ")
            # Past --dispatch-timeout (2 s): the engine still counts it attended.
            time.sleep(2.5)
            self.get_many(5, f"remote={pc.CLIENT6} ")
            ks, st = kernel_stats(eng), eng.stats()
            self.assertEqual(ks["steered"], 20)
            self.assertEqual(ks["reclaimed"], 0)
            self.assertEqual(st.get("accepted", 0), 0)
            self.assertNotIn("its receiver is gone", eng.output())
        finally:
            for pid in masters:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def test_node_cluster_scheduling_policy_none(self):
        if not NODE:
            self.skipTest("no node installed")
        eng = self.start_engine("on")
        script = write(self.topo.path("cluster.js"), NODE_CLUSTER)
        p = self.start_server([NODE, script, pc.FE8F_DIR2], NODE_CLUSTER_SCHED_POLICY="none")
        workers = set()
        for _ in range(2):
            line = p.stdout.readline().decode()
            self.assertIn('"address":"fe8f::2:0:1","port":80', line)
            workers.add(int(line.split()[1]))
        self.assertLessEqual(workers, set(self.listening_processes()))
        pids = set()
        for _ in range(20):
            status, _, body = pc.http_get_eventually(self.topo, pc.PUBLIC6)
            self.assertEqual(status, 200)
            self.assertIn(f"peer={pc.CLIENT6} ", body)
            pids.add(int(re.search(r"pid=(\d+)", body).group(1)))
        self.assertLessEqual(pids, workers)
        self.assertEqual(kernel_stats(eng)["steered"], 20)
        self.assertEqual(eng.stats().get("accepted", 0), 0)


if __name__ == "__main__":
    sbxtest.run_tap(FakeEngineTest, EngineTest, skip_reason=pc.skip_reason())
