"""Fixtures for the engine's integration suites: the daemon under test,
backends that report what they received, and stats parsing."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import sbxtest  # noqa: E402

BUILD = os.environ.get("SBX_BUILD", os.path.join(sbxtest.ROOT, "build"))
SOCKETBOX = os.path.join(BUILD, "engine", "socketbox")


class Backend:
    """An "A"-protocol receiver at `path`: for each socket it records the
    socket's local and peer address, greets with `name`, and closes."""

    def __init__(self, path, name, delay=0.0, stall=0.0):
        self.path, self.name, self.delay = path, name.encode(), delay
        self.received = []  # (local (host, port), peer (host, port))
        self.lock = threading.Lock()
        self.stall_until = time.monotonic() + stall
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.stopped = False
        self.draining = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped:
            wait = self.stall_until - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, 0.05))
                continue
            try:
                # Blocking while draining: only a blocking read turns an empty
                # shut-down queue into an empty read (a timed one says EAGAIN).
                self.sock.settimeout(None if self.draining else 0.2)
                fd, payload = sbxtest.recv_fd(self.sock)
            except socket.timeout:
                continue
            except OSError:
                return
            if fd is None:
                # After shutdown(SHUT_RD) the kernel answers an empty queue
                # with an empty read: everything queued has been served.
                if self.draining and payload == b"":
                    return
                continue
            conn = socket.socket(fileno=fd)
            try:
                local, peer = conn.getsockname()[:2], conn.getpeername()[:2]
                with self.lock:
                    self.received.append((local, peer))
                if self.delay:
                    time.sleep(self.delay)
                conn.sendall(self.name)
            except OSError:
                pass
            finally:
                conn.close()

    def count(self):
        with self.lock:
            return len(self.received)

    def close(self, unlink=True, graceful=False):
        """Stops the backend. `graceful` is how a backend restarts without
        losing what is queued for it: shut the receive side (the engine's
        sends now fail and it holds connections for the next instance),
        then serve what is already queued, then close."""
        if graceful:
            self.draining = True
            self.sock.shutdown(socket.SHUT_RD)
            self.stall_until = 0
            self.thread.join(timeout=10)
            if self.thread.is_alive():
                raise AssertionError(f"backend {self.path}: queue not drained in 10 s")
        self.stopped = True
        self.sock.close()
        self.thread.join(timeout=2)
        if unlink:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def engine_args(conf, *extra, port=80, kernel_dispatch="on", listener_socket=None):
    """The engine's command line as the suites run it: configuration `conf`,
    [::]:`port`, one worker thread, the kernel dispatch mode and, when given,
    its listener socket; then `extra`."""
    args = ["-f", conf, "-l", "::", "-p", str(port), "--threads", "1"]
    args += ["--kernel-dispatch", kernel_dispatch]
    if listener_socket is not None:
        args += ["--listener-socket", listener_socket]
    return args + list(extra)


class Engine:
    """The daemon under test, in a namespace, with its stderr collected."""

    def __init__(self, args, ns=None, pass_fds=(), env=None, wait_ready=True, wrapper=()):
        """`wrapper`: a command that execs the daemon (argv prefix)."""
        self.lines = []
        self.lock = threading.Lock()
        self.proc = sbxtest.spawn(
            list(wrapper) + [SOCKETBOX] + list(args),
            ns=ns,
            pass_fds=pass_fds,
            env=env,
            stderr=subprocess.PIPE,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if wait_ready:
            sbxtest.wait_for(
                lambda: self.has_line("ready:") or self.proc.poll() is not None,
                timeout=10,
                what="engine ready",
            )
            if self.proc.poll() is not None:
                raise AssertionError(f"engine exited {self.proc.returncode}: {self.output()}")

    def _read(self):
        # Whole chunks, each added under one lock: the daemon writes a stats
        # block with one write(2), which a pipe read returns whole, so a
        # reader that sees the block's "stats total" line sees all of it.
        fd = self.proc.stderr.fileno()
        pending = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            with self.lock:
                self.lines.extend(l.decode(errors="replace") for l in complete)
        if pending:
            with self.lock:
                self.lines.append(pending.decode(errors="replace"))

    def has_line(self, text):
        with self.lock:
            return any(text in line for line in self.lines)

    def output(self):
        with self.lock:
            return "\n".join(self.lines)

    def stats(self, settle=True):
        """Asks for counters (SIGUSR1) and returns the newest total as a dict,
        with per-backend deliveries under 'backend:PATH'.  With `settle`, asks
        again (up to 5 s) until nothing is in flight: a backend can greet a
        client before the engine has reaped the completion of its send."""
        deadline = time.monotonic() + 5
        while True:
            st = self._stats_once()
            if not settle or st.get("accepted", 0) == st.get("dispatched", 0) + st.get(
                "dropped", 0
            ):
                return st
            if time.monotonic() > deadline:
                return st
            time.sleep(0.05)

    def _stats_once(self):
        with self.lock:
            start = len(self.lines)
        self.proc.send_signal(signal.SIGUSR1)

        def ready():
            with self.lock:
                return any(l.startswith("stats total") for l in self.lines[start:])

        sbxtest.wait_for(ready, timeout=5, what="stats")
        with self.lock:
            return parse_stats(self.lines[start:])

    def stop(self, sig=signal.SIGTERM, timeout=20):
        code = sbxtest.stop(self.proc, sig, timeout)
        self.reader.join(timeout=2)
        return code

    def final_stats(self):
        with self.lock:
            return parse_stats(self.lines)


def parse_stats(lines):
    out = {}
    for line in lines:
        if line.startswith("stats total"):
            out.update({k: int(v) for k, v in re.findall(r"(\S+)=(\d+)", line)})
        m = re.match(r"stats backend (\S+) delivered=(\d+)", line)
        if m:
            out["backend:" + m.group(1)] = int(m.group(2))
    return out


def fetch(ns, host, port, timeout=5.0, source=None):
    """Connects from namespace `ns` and returns the greeting (b"" if the
    connection was closed without one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = sbxtest.socket_in(ns, family)
    s.settimeout(timeout)
    try:
        if source is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(source)
        s.connect((host, port))
        data = b""
        while True:
            chunk = s.recv(64)
            if not chunk:
                return data
            data += chunk
    except (ConnectionResetError, socket.timeout):
        return b""
    finally:
        s.close()


def listening_sockets(ns, port):
    """Lines of `ss -ltn` in `ns` for `port` (to prove nothing stays bound)."""
    out = sbxtest.sh("ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}").stdout
    return [l for l in out.splitlines() if l.strip()]


def write(path, text):
    """Writes `text` to `path` (a configuration, usually); returns `path`."""
    with open(path, "w") as f:
        f.write(text)
    return path


class TopologyTest(unittest.TestCase):
    """A fresh server/client topology per test, and the backends the test
    made through backend(), closed and removed after it."""

    def setUp(self):
        self.topo = sbxtest.Topology().__enter__()
        self.backends = []

    def tearDown(self):
        for b in self.backends:
            b.close()
        self.topo.close()

    def backend(self, name, **kw):
        b = Backend(self.topo.path(name + ".sock"), name, **kw)
        self.backends.append(b)
        return b
