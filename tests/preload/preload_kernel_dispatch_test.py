"""Kernel dispatch under libsocketbox-preload.so (docs/preload.md, "Kernel
dispatch"), with the real daemon (--kernel-dispatch on) in the server
namespace of a topology and clients in the client namespace: root and BPF
sk_lookup are needed; otherwise the suite skips, saying why.

The daemon runs with -U and a configuration that sends port 80 of
2001:db8:1::/64 to the server's backend path twice over: literally (the
kernel steers those connections into the listener the server took) and, for
2001:db8:1::20 only, through the template .../00001_#//P_, which the kernel
leaves to the engine (the path depends on the connection), so the engine
accepts them and sends each over the server's datagram socket, as it does
with everything it cannot steer. One backend, both ways, by the real
daemon; its counters tell which way each connection went.

- The server's fd is the daemon's own TCP listener (one socket, held by the
  server at that fd and by the daemon, listening on the steering port), the
  backend's path still bound by the server's datagram socket, and what the
  program sees of its fd is what it bound.
- Steered connections and connections over the datagram socket, alternated
  so the server is asleep when each comes, are all served and wake it: an
  epoll server (selectors), a poll server (python3 -m http.server), a
  blocking accept loop, Node.js (libuv's epoll), and nginx's workers.
- Node.js cluster with NODE_CLUSTER_SCHED_POLICY=none: the workers accept
  from the listener the primary took (steered connections only: the
  datagram socket stays with the primary, docs/preload.md).
- nginx's binary upgrade keeps the listener attended.
- No listener: refused by a daemon whose configuration names the path only
  as a template, no daemon at SKBOX_LISTENER_SOCKET, SKBOX_KERNEL_DISPATCH=0:
  the fd stays the datagram socket, the daemon's connections are served
  over it, and the library says why once on stderr (nothing with
  SKBOX_KERNEL_DISPATCH=0). With --kernel-dispatch off all is as before:
  the engine accepts every connection, and the library says so once."""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

import preload_common as pc
from preload_common import kernel_stats, sbxtest

sys.path.insert(0, os.path.join(sbxtest.ROOT, "tests", "engine"))
from engine_fixture import Engine, engine_args, write  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NODE = shutil.which("node")

# Port 80 of STEERED6 (and the rest of the /64) goes to the backend's path
# as written: the kernel steers it. ENGINE6 goes there through a -U
# template: the engine accepts it and sends it over the datagram socket.
STEERED6 = pc.PUBLIC6
ENGINE6 = "2001:db8:1::20"

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


def ask(c):
    """Sends REQUEST on connection `c` and returns the whole answer."""
    c.settimeout(10)
    try:
        c.sendall(REQUEST)
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return data.decode(errors="replace")
            data += chunk
    finally:
        c.close()


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
    return sorted(out)


def unix_socket_inode(pid, path):
    """The inode of the Unix socket bound at `path` in the network namespace
    of process `pid` (/proc/PID/net/unix)."""
    with open(f"/proc/{pid}/net/unix") as f:
        for line in f:
            words = line.split()
            if len(words) >= 8 and words[7] == path:
                return int(words[6])
    return None


def process_state(pid):
    """R, S, D...: the state of the main thread of process `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class EngineTest(unittest.TestCase):
    """The daemon in the server namespace (see the module's docstring for
    its configuration); the server under the preload there too; clients in
    the client namespace."""

    def setUp(self):
        reason = sbxtest.require_root_and_netns()
        if reason:
            self.skipTest(reason)
        self.topo = sbxtest.Topology().__enter__()
        self.env = pc.preload_env(self.topo, SKBOX_LISTENER_SOCKET=self.topo.path("listeners.sock"))
        root2 = self.env["SKBOX_DIRECTORY_ROOT2"]
        self.backend = pc.directory2_path(root2, 0, 1, 80)
        self.template = os.path.join(root2, "00000", "00001_#//P_")
        self.conf = self.config(
            f"ip:{ENGINE6} port:80 jump-unix:{self.template}",
            f"ip:2001:db8:1::/64 port:80 jump-unix:{self.backend}",
        )
        self.engine = None
        self.procs = []
        self.stdout = {}

    def tearDown(self):
        for p in self.procs:
            sbxtest.stop(p)
        if self.engine:
            self.engine.stop()
        self.topo.close()

    def config(self, *rules, name="socketbox.conf"):
        return write(
            self.topo.path(name),
            f"max-rules:1\nrule-set:0 size:{len(rules) + 1}\n"
            + "".join(r + "\n" for r in rules)
            + "default fail\n",
        )

    def start_engine(self, mode, conf=None, listener_socket=None):
        args = engine_args(
            conf or self.conf,
            "-U",
            kernel_dispatch=mode,
            listener_socket=listener_socket or self.env["SKBOX_LISTENER_SOCKET"],
        )
        try:
            self.engine = Engine(args, ns=self.topo.server)
        except AssertionError as e:
            if mode == "on" and "load the kernel dispatch program" in str(e):
                self.skipTest(f"the kernel cannot run the steering program: {str(e)[-300:]}")
            raise
        return self.engine

    def stop_engine(self):
        self.engine.stop()
        self.engine = None

    def start_server(self, argv, **env):
        """`argv` under the preload in the server namespace; its stdout is
        read line by line (first_line) so that no wait is unbounded."""
        p = self.topo.spawn_server(argv, env={**self.env, **env}, stdout=subprocess.PIPE)
        self.procs.append(p)
        lines = self.stdout[p.pid] = []
        threading.Thread(
            target=lambda: lines.extend(l.decode(errors="replace") for l in p.stdout), daemon=True
        ).start()
        pc.wait_for_path(self.backend, p)
        return p

    def first_line(self, p, prefix, timeout=15):
        """The next line `p` printed, which must start with `prefix`."""
        lines = self.stdout[p.pid]
        try:
            sbxtest.wait_for(
                lambda: lines or p.poll() is not None,
                timeout=timeout,
                what=f"a line {prefix!r} from the server",
            )
        except AssertionError:
            sbxtest.stop(p)
            raise AssertionError(f"no line {prefix!r}: {p.stderr.read().decode(errors='replace')}")
        if not lines:
            self.fail(f"server exited {p.returncode}: {p.stderr.read().decode(errors='replace')}")
        line = lines.pop(0)
        self.assertTrue(line.startswith(prefix), f"expected {prefix!r}, got {line!r}")
        return line

    def server_log(self, p):
        sbxtest.stop(p)
        return p.stderr.read().decode(errors="replace")

    def steering_listeners(self):
        """inode -> (port, [(pid, fd), ...]): the TCP listeners in the server
        namespace other than port 80, the engine's own, and who holds them
        (ss -ltnpe)."""
        out = self.topo.ns_sh(self.topo.server, "ss", "-Hltnpe").stdout
        found = {}
        for line in out.splitlines():
            port = int(line.split()[3].rsplit(":", 1)[1])
            ino = re.search(r"\bino:(\d+)", line)
            if port == 80 or not ino:
                continue
            holders = [(int(pid), int(fd)) for pid, fd in re.findall(r"pid=(\d+),fd=(\d+)", line)]
            found[int(ino.group(1))] = (port, holders)
        return found

    def listening_processes(self):
        """pid -> fds of the TCP listeners on the engine's steering port(s)."""
        found = {}
        for _, holders in self.steering_listeners().values():
            for pid, fd in holders:
                found.setdefault(pid, []).append(fd)
        return found

    def assert_is_the_engines_listener(self, pid, fd):
        """Fd `fd` of `pid` is the daemon's steering listener: one socket,
        listening on a port other than 80, held by the daemon too. Returns
        its inode."""
        inode = socket_inode(pid, fd)
        port, holders = self.steering_listeners().get(inode, (None, []))
        self.assertIsNotNone(port, f"fd {fd} of {pid} (socket {inode}) is not a steering listener")
        self.assertIn((pid, fd), holders)
        self.assertIn(
            self.engine.proc.pid,
            [h[0] for h in holders],
            f"socket {inode} on port {port} is not the daemon's: {holders}",
        )
        return inode

    def assert_keeps_its_datagram_socket(self, pid, listener_fd):
        """The backend's path is still bound, by a socket of `pid` at an fd
        of its own."""
        dgram = unix_socket_inode(pid, self.backend)
        self.assertIsNotNone(dgram, f"nothing bound at {self.backend}")
        fds = fds_of_inode(pid, dgram)
        self.assertEqual(len(fds), 1, fds)
        self.assertNotEqual(fds[0], listener_fd)

    def connect(self, host):
        return sbxtest.connect_from(self.topo.client, host, 80, timeout=10)

    def serve_both_ways(self, count, expect, sleepers):
        """`count` connections the kernel steers and `count` the engine sends
        over the datagram socket, alternated, each made only once every
        process in `sleepers` is asleep (waiting for the next connection):
        each is answered, so each woke the server, none lost or left waiting."""
        for i in range(count):
            for how, host in (("steered", STEERED6), ("over the datagram socket", ENGINE6)):
                sbxtest.wait_for(
                    lambda: all(process_state(pid) == "S" for pid in sleepers),
                    timeout=5,
                    interval=0.005,
                    what=f"{sleepers} asleep",
                )
                self.assertIn(expect, ask(self.connect(host)), f"{how} connection {i}")

    def assert_counts(self, steered, via_engine):
        """The kernel steered exactly `steered`; the engine accepted exactly
        `via_engine` and sent each on; the listener is the backend's, taken."""
        ks, st = kernel_stats(self.engine), self.engine.stats()
        self.assertEqual(ks["steered"], steered, ks)
        self.assertEqual(ks["passed.to_engine"], via_engine, ks)
        self.assertEqual(ks["listeners.granted"], 1, ks)
        self.assertEqual(ks["requests.refused"], 0, ks)
        self.assertEqual(ks.get("backend:" + self.backend), f"steered={steered} listener=taken", ks)
        self.assertEqual(st.get("accepted", 0), via_engine, st)
        self.assertEqual(st.get("dispatched", 0), via_engine, st)

    def get_many(self, count, want):
        for i in range(count):
            status, _, body = pc.http_get_eventually(self.topo, STEERED6)
            self.assertEqual(status, 200, f"request {i}")
            self.assertIn(want, body, f"request {i}")

    def test_epoll_server_serves_the_listener_and_the_datagram_socket(self):
        self.start_engine("on")
        p = self.start_server([pc.PYTHON, "-c", EPOLL_SERVER, pc.FE8F_DIR2])
        line = self.first_line(p, "fd ")
        fd = int(line.split()[1])
        # What the program sees of its fd is what it bound.
        self.assertIn("name ('fe8f::2:0:1', 80, 0, 0) acceptconn 1 type 1 domain 10", line)
        self.assertIn("EpollSelector", self.first_line(p, "selector"))
        self.assert_is_the_engines_listener(p.pid, fd)
        self.assert_keeps_its_datagram_socket(p.pid, fd)
        # Connections over the datagram socket wake the epoll (the receiving
        # socket is registered with it alongside the listener).
        self.serve_both_ways(4, f"peer={pc.CLIENT6}\n", [p.pid])
        self.assert_counts(steered=4, via_engine=4)

    def test_poll_server_python_http_server(self):
        # socketserver waits in poll(): the receiving socket is polled too.
        self.start_engine("on")
        p = self.start_server(
            [
                pc.PYTHON,
                "-m",
                "http.server",
                "--bind",
                pc.FE8F_DIR2,
                "--directory",
                self.topo.tmp,
                "80",
            ]
        )
        sbxtest.wait_for(
            lambda: kernel_stats(self.engine).get("listeners.granted", 0) == 1,
            what="the listener granted",
        )
        fds = self.listening_processes().get(p.pid, [])
        self.assertEqual(len(fds), 1, fds)
        inode = self.assert_is_the_engines_listener(p.pid, fds[0])
        self.assertEqual(fds_of_inode(p.pid, inode), fds)  # once, at the program's fd
        self.assert_keeps_its_datagram_socket(p.pid, fds[0])
        self.get_many(20, "Directory listing")
        self.serve_both_ways(4, "200 OK", [p.pid])
        self.assert_counts(steered=24, via_engine=4)
        log = self.server_log(p)
        self.assertEqual(log.count(f"{pc.CLIENT6} - - "), 28, log)

    def test_blocking_accept_loop(self):
        self.start_engine("on")
        p = self.start_server([pc.PYTHON, "-c", BLOCKING_SERVER, pc.FE8F_DIR2])
        fd = int(self.first_line(p, "fd ").split()[1])
        self.assert_is_the_engines_listener(p.pid, fd)
        self.assert_keeps_its_datagram_socket(p.pid, fd)
        # A datagram arrival wakes the blocked accept (it waits on both).
        self.serve_both_ways(4, f"peer={pc.CLIENT6}\n", [p.pid])
        self.assert_counts(steered=4, via_engine=4)

    def test_node_server_wakes_for_the_datagram_socket(self):
        # libuv's epoll: the receiving socket is registered with the listener.
        if not NODE:
            self.skipTest("no node installed")
        self.start_engine("on")
        script = write(self.topo.path("server.js"), NODE_SERVER)
        p = self.start_server([NODE, script, pc.FE8F_DIR2])
        self.assertIn(
            '{"address":"fe8f::2:0:1","family":"IPv6","port":80}', self.first_line(p, "address ")
        )
        fds = self.listening_processes().get(p.pid, [])
        self.assertEqual(len(fds), 1, fds)
        inode = self.assert_is_the_engines_listener(p.pid, fds[0])
        self.assertEqual(fds_of_inode(p.pid, inode), fds)
        self.serve_both_ways(4, f"peer={pc.CLIENT6}\n", [p.pid])
        self.assert_counts(steered=4, via_engine=4)

    def test_node_cluster_scheduling_policy_none(self):
        # The primary only binds (the preload takes the listener then) and
        # hands the fd to its workers, which listen and accept on it.
        if not NODE:
            self.skipTest("no node installed")
        self.start_engine("on")
        script = write(self.topo.path("cluster.js"), NODE_CLUSTER)
        p = self.start_server([NODE, script, pc.FE8F_DIR2], NODE_CLUSTER_SCHED_POLICY="none")
        workers = set()
        for _ in range(2):
            line = self.first_line(p, "listening ")
            # The workers' server.address() is what the primary bound.
            self.assertIn('{"addressType":6,"address":"fe8f::2:0:1","port":80}', line)
            workers.add(int(line.split()[1]))
        # Each worker holds the daemon's listener once.
        listeners = self.listening_processes()
        for w in workers:
            fds = listeners.get(w, [])
            self.assertEqual(len(fds), 1, f"worker {w}: {listeners}")
            inode = self.assert_is_the_engines_listener(w, fds[0])
            self.assertEqual(fds_of_inode(w, inode), fds, f"worker {w}")
        pids = set()
        for _ in range(20):
            answer = ask(self.connect(STEERED6))
            self.assertIn(f"peer={pc.CLIENT6} ", answer)
            self.assertIn('address={"address":"fe8f::2:0:1","family":"IPv6","port":80}', answer)
            pids.add(int(re.search(r"pid=(\d+)", answer).group(1)))
        self.assertLessEqual(pids, workers)
        self.assert_counts(steered=20, via_engine=0)

    # No listener: each time a daemon with kernel dispatch on that sends the
    # backend its connections the classic way, and a blocking server that
    # gets no listener from it.

    def test_refused_keeps_the_datagram_socket_and_says_so_once(self):
        # The configuration names the backend's path only as a template: the
        # engine finds no path of its own bound by this socket (EPERM).
        only_template = self.config(
            f"ip:2001:db8:1::/64 port:80 jump-unix:{self.template}", name="template-only.conf"
        )
        self.check_no_listener(
            "refused", only_template, {}, "the engine at {} does not send to this socket"
        )

    def test_no_engine_keeps_the_datagram_socket_and_says_so_once(self):
        # Nothing at the server's SKBOX_LISTENER_SOCKET (the daemon's is elsewhere).
        self.check_no_listener(
            "no engine",
            self.conf,
            {"SKBOX_LISTENER_SOCKET": self.topo.path("nobody.sock")},
            "no engine answers at {}",
        )

    def test_kernel_dispatch_0_does_not_ask_and_says_nothing(self):
        self.check_no_listener(
            "SKBOX_KERNEL_DISPATCH=0", self.conf, {"SKBOX_KERNEL_DISPATCH": "0"}, None
        )

    def check_no_listener(self, case, conf, env, why):
        """A blocking server that gets no listener from a daemon with kernel
        dispatch on (`case`): keeps its datagram socket, over which the
        daemon's connections are served, and says `why` once (or nothing)."""
        eng = self.start_engine("on", conf=conf)
        p = self.start_server([pc.PYTHON, "-c", BLOCKING_SERVER, pc.FE8F_DIR2], **env)
        path = env.get("SKBOX_LISTENER_SOCKET", self.env["SKBOX_LISTENER_SOCKET"])
        self.assertEqual(os.path.exists(path), case != "no engine", path)
        fd = int(self.first_line(p, "fd ").split()[1])
        # Still the datagram socket bound at the backend's path.
        self.assertEqual(socket_inode(p.pid, fd), unix_socket_inode(p.pid, self.backend))
        self.assertNotIn(p.pid, self.listening_processes())
        for i in range(3):
            self.assertIn(f"peer={pc.CLIENT6}\n", ask(self.connect(STEERED6)), f"connection {i}")
        ks, st = kernel_stats(eng), eng.stats()
        self.assertEqual((ks["steered"], ks["listeners.granted"]), (0, 0), ks)
        self.assertEqual(ks["requests.refused"], 1 if case == "refused" else 0, ks)
        # The kernel left each to the engine: a template's, or no listener taken.
        passed = "passed.to_engine" if case == "refused" else "passed.no_listener"
        self.assertEqual(ks[passed], 3, ks)
        self.assertEqual((st.get("accepted", 0), st.get("dispatched", 0)), (3, 3), st)
        lines = [l for l in self.server_log(p).splitlines() if l.startswith("socketbox-preload[")]
        if why is None:
            self.assertEqual(lines, [])
        else:
            self.assertEqual(len(lines), 1, lines)
            self.assertIn(f"listen fd {fd} ({self.backend}): kernel dispatch not used: ", lines[0])
            self.assertIn(why.format(path), lines[0])

    def test_kernel_dispatch_off_is_as_before(self):
        eng = self.start_engine("off")
        p = self.start_server(
            [
                pc.PYTHON,
                "-m",
                "http.server",
                "--bind",
                pc.FE8F_DIR2,
                "--directory",
                self.topo.tmp,
                "80",
            ]
        )
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

        self.start_engine("on")
        conf = write(
            self.topo.path("nginx.conf"),
            nt.CONFIG.format(tmp=self.topo.tmp, listen=f"[{pc.FE8F_DIR2}]:80"),
        )
        p = self.start_server([NGINX, "-c", conf])
        sbxtest.wait_for(lambda: len(self.listening_processes()) >= 3, what="nginx workers")
        self.get_many(30, f"remote={pc.CLIENT6} ")
        # The workers also take what comes over the datagram socket.
        nginx = set(self.listening_processes()) - {self.engine.proc.pid}
        self.serve_both_ways(3, f"remote={pc.CLIENT6} ", nginx)
        self.assert_counts(steered=33, via_engine=3)
        self.assertEqual(sbxtest.stop(p, timeout=10), 0)

    def test_nginx_binary_upgrade_keeps_the_listener_attended(self):
        # USR2 execs a new master with the listening fds; the channel and the
        # datagram socket go along (the fd is not close-on-exec), so after the
        # old master quits the engine still steers to the same listener.
        if not os.path.exists(NGINX):
            self.skipTest("nginx not installed")
        import preload_nginx_test as nt

        eng = self.start_engine("on")
        # Daemonized: nginx ignores USR2 while the process that started it
        # runs. The new binary gets only the environment `env` names.
        conf = write(
            self.topo.path("nginx.conf"),
            nt.CONFIG.format(tmp=self.topo.tmp, listen=f"[{pc.FE8F_DIR2}]:80").replace(
                "daemon off;",
                "daemon on;\nenv LD_PRELOAD;\nenv SKBOX_DIRECTORY_ROOT2;\n"
                "env SKBOX_LISTENER_SOCKET;",
            ),
        )
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
                sbxtest.wait_for(
                    lambda: os.path.exists(pid_file + ".oldbin") and os.path.exists(pid_file),
                    what="nginx's new master",
                )
            except AssertionError:
                raise AssertionError(open(self.topo.path("error.log")).read()[-2000:])
            masters.append(int(open(pid_file).read()))
            os.kill(masters[0], signal.SIGQUIT)
            sbxtest.wait_for(
                lambda: not os.path.exists(f"/proc/{masters[0]}"), what="the old master gone"
            )
            sbxtest.wait_for(
                lambda: set(self.listening_processes()) - {masters[1]}, what="the new workers"
            )
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


if __name__ == "__main__":
    sbxtest.run_tap(EngineTest, skip_reason=pc.skip_reason())
